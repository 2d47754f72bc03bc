// io/bundled.ts: where the files that ship in the checkout are (Node only: file paths resolved from
// this module's URL, so they hold whatever the working directory; the browser bundle must not
// import io/, a page fetches the model by URL): the bundled model, its sample images and the
// shapes dataset it was trained and is evaluated on.

import { fileURLToPath } from 'node:url';

/** The repository (package) root, with a trailing separator. */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** models/maskgpu-shapes.safetensors: what `maskgpu segment` and `maskgpu eval` use without --weights. */
export const BUNDLED_MODEL = fileURLToPath(new URL('../models/maskgpu-shapes.safetensors', import.meta.url));

/** models/samples/: shapes_*.png, images the bundled model segments (the README's main job). */
export const BUNDLED_SAMPLES = fileURLToPath(new URL('../models/samples/', import.meta.url));

/** data/shapes/test: the COCO-format test split of the bundled model, `maskgpu eval`'s default. */
export const BUNDLED_TEST_SPLIT = fileURLToPath(new URL('../data/shapes/test', import.meta.url));
