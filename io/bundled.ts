// io/bundled.ts: where the files that ship with maskgpu are (Node only: file paths, so they hold
// whatever the working directory; the browser bundle must not import io/, a page fetches the model
// by URL): the bundled model, its sample images and (in the checkout only, not the npm package) the
// shapes dataset it was trained and is evaluated on. The root is the nearest folder above this
// module whose package.json is maskgpu's: the checkout (this file is io/bundled.ts) and an installed
// package (this code is bundled into dist/node.js and dist/cli.js) alike.

import { readFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    try {
      if (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name === 'maskgpu') return dir.endsWith(sep) ? dir : dir + sep;
    } catch {
      // no package.json here, or not JSON: keep looking
    }
    if (dirname(dir) === dir) break;
  }
  return fileURLToPath(new URL('..', import.meta.url)); // io/ and dist/ both sit one level down
}

/** The repository (package) root, with a trailing separator. */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

/** models/maskgpu-shapes.safetensors: what `maskgpu segment` and `maskgpu eval` use without --weights. */
export const BUNDLED_MODEL = join(PACKAGE_ROOT, 'models', 'maskgpu-shapes.safetensors');

/** models/samples/ (with a trailing separator): shapes_*.png, images the bundled model segments (the README's main job). */
export const BUNDLED_SAMPLES = join(PACKAGE_ROOT, 'models', 'samples') + sep;

/** data/shapes/test: the COCO-format test split of the bundled model, `maskgpu eval`'s default (in the checkout, not the npm package). */
export const BUNDLED_TEST_SPLIT = join(PACKAGE_ROOT, 'data', 'shapes', 'test');
