// io/split.ts: COCO-format splits on disk (Node only: node:fs; the browser bundle must not import
// io/): loadSplit reads and validates DIR/annotations.json, predictSplit runs a model over the
// split's images, parsePredictions / toResults read and write COCO results files. Used by
// `maskgpu eval`, the pruning experiment and the tests; the metrics themselves are eval/coco.ts.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MaskRCNN } from '../engine/maskrcnn/model.ts';
import { CocoFormatError, parseCocoDataset, type CocoDataset, type EvalDetection } from '../eval/coco.ts';
import { BUNDLED_TEST_SPLIT } from './bundled.ts';
import { readImageFile } from './image.ts';

/** The bundled model's test split (data/shapes/test). */
export const DEFAULT_SPLIT = BUNDLED_TEST_SPLIT;

export interface Split {
  dir: string;
  dataset: CocoDataset;
}

/** Reads and validates DIR/annotations.json; `limit` keeps the first N images (and their annotations). */
export async function loadSplit(dir: string, limit?: number): Promise<Split> {
  const path = join(dir, 'annotations.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found; --data must be a folder with a COCO annotations.json (make one with tools/make_shapes_dataset.py)' : (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path} is not JSON: ${(e as Error).message}`);
  }
  const dataset = parseCocoDataset(json);
  if (limit !== undefined) {
    const images = dataset.images.slice(0, limit);
    const ids = new Set(images.map((im) => im.id));
    return { dir, dataset: { ...dataset, images, annotations: dataset.annotations.filter((a) => ids.has(a.image_id)) } };
  }
  return { dir, dataset };
}

/**
 * Runs the model over every image of the split; detections in COCO's [x, y, w, h] box form.
 * `onProgress` is called after each image with the count done, the split's size and the image's
 * file name (e.g. to tick a createProgress bar, io/progress.ts).
 */
export async function predictSplit(
  model: MaskRCNN,
  split: Split,
  onProgress?: (done: number, total: number, fileName: string) => void,
): Promise<EvalDetection[]> {
  const out: EvalDetection[] = [];
  const { images } = split.dataset;
  for (let i = 0; i < images.length; i++) {
    const im = images[i];
    const image = await readImageFile(join(split.dir, im.file_name));
    if (image.width !== im.width || image.height !== im.height) {
      throw new Error(`${im.file_name} is ${image.width}x${image.height}, but annotations.json says ${im.width}x${im.height}`);
    }
    const result = await model.segment(image);
    for (const d of result.detections) {
      const [x1, y1, x2, y2] = d.box;
      out.push({ imageId: im.id, categoryId: d.label, score: d.score, bbox: [x1, y1, x2 - x1, y2 - y1], mask: d.mask });
    }
    onProgress?.(i + 1, images.length, im.file_name);
  }
  return out;
}

/** A COCO results file (list of {image_id, category_id, score, bbox, segmentation}) as detections. */
export function parsePredictions(json: unknown, where: string): EvalDetection[] {
  if (!Array.isArray(json)) throw new CocoFormatError(`${where}: a COCO results file is a JSON list of detections`);
  return json.map((r, i) => {
    const ok =
      r && Number.isInteger(r.image_id) && Number.isInteger(r.category_id) && typeof r.score === 'number' && Array.isArray(r.bbox) && r.bbox.length === 4 && r.segmentation && Array.isArray(r.segmentation.counts);
    if (!ok) throw new CocoFormatError(`${where}: entry ${i} needs image_id, category_id, score, bbox [x,y,w,h] and an uncompressed RLE segmentation`);
    return { imageId: r.image_id, categoryId: r.category_id, score: r.score, bbox: r.bbox, mask: r.segmentation };
  });
}

/** Detections as a COCO results file's entries (the inverse of parsePredictions). */
export function toResults(dets: EvalDetection[]): object[] {
  return dets.map((d) => ({ image_id: d.imageId, category_id: d.categoryId, score: d.score, bbox: d.bbox, segmentation: d.mask }));
}
