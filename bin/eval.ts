// `maskgpu eval [--weights W] [--data DIR] [--limit N] [--predictions-out F] [--predictions F] [--json]`:
// runs the engine over a COCO-format split (DIR/annotations.json + the images it names) and prints
// COCO box/mask AP@[.5:.95], AP50, AP75 and the mean mask IoU of matched instances (eval/coco.ts),
// the numbers tools/eval_torchvision.py gives for torchvision's own predictions on the same weights.
// With --predictions it scores a COCO results file instead of running the model.

import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN, type MaskRCNN } from '../engine/maskrcnn/model.ts';
import type { MaskRCNNOptions } from '../engine/maskrcnn/options.ts';
import { CocoFormatError, evaluateCoco, formatMetrics, parseCocoDataset, type CocoDataset, type CocoMetrics, type EvalDetection } from '../eval/coco.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile } from '../weights-loader/node.ts';
import { readImageFile } from '../io/image.ts';
import { BUNDLED_MODEL } from './segment.ts';
import { writeFileAtomic } from '../weights-loader/node.ts';

export const DEFAULT_SPLIT = resolve(dirname(BUNDLED_MODEL), '../data/shapes/test');

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

/** Runs the model over every image of the split; detections in COCO's [x, y, w, h] box form. */
export async function predictSplit(model: MaskRCNN, split: Split, onImage?: (done: number, total: number) => void): Promise<EvalDetection[]> {
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
    onImage?.(i + 1, images.length);
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

export function toResults(dets: EvalDetection[]): object[] {
  return dets.map((d) => ({ image_id: d.imageId, category_id: d.categoryId, score: d.score, bbox: d.bbox, segmentation: d.mask }));
}

interface EvalArgs {
  weights: string;
  data: string;
  limit?: number;
  predictions?: string;
  predictionsOut?: string;
  json: boolean;
  force: boolean;
  options: MaskRCNNOptions;
}

const USAGE = `usage: maskgpu eval [--weights W.safetensors] [--data DIR] [--limit N] [--score-thresh S]
                   [--predictions-out F.json [--force]] [--predictions F.json] [--json]
  --data DIR          folder with a COCO annotations.json and its images (default: data/shapes/test)
  --weights W         model (default: the bundled models/maskgpu-shapes.safetensors)
  --limit N           only the first N images
  --score-thresh S    box score threshold (default 0.05, torchvision's and COCO evaluation's)
  --predictions-out F also write the detections as a COCO results file (uncompressed RLE)
  --predictions F     score this COCO results file instead of running the model
  --json              print the metrics as JSON`;

function parseEvalArgs(argv: string[]): EvalArgs | null {
  const args: EvalArgs = { weights: BUNDLED_MODEL, data: DEFAULT_SPLIT, json: false, force: false, options: {} };
  const need = (flag: string, v: string | undefined) => {
    if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--weights': args.weights = need(a, argv[++i]); break;
      case '--data': args.data = need(a, argv[++i]); break;
      case '--limit': {
        const n = Number(need(a, argv[++i]));
        if (!Number.isInteger(n) || n < 1) throw new Error(`--limit needs a positive integer, got '${argv[i]}'`);
        args.limit = n;
        break;
      }
      case '--score-thresh': {
        const n = Number(need(a, argv[++i]));
        if (!(n >= 0 && n <= 1)) throw new Error(`--score-thresh needs a number in [0, 1], got '${argv[i]}'`);
        args.options.boxScoreThresh = n;
        break;
      }
      case '--predictions': args.predictions = need(a, argv[++i]); break;
      case '--predictions-out': args.predictionsOut = need(a, argv[++i]); break;
      case '--json': args.json = true; break;
      case '--force': args.force = true; break;
      case '--help': case '-h': return null;
      default: throw new Error(`unknown option '${a}' (maskgpu eval --help)`);
    }
  }
  return args;
}

export async function evalCommand(argv: string[]): Promise<number> {
  const args = parseEvalArgs(argv);
  if (!args) {
    console.log(USAGE);
    return 0;
  }
  const split = await loadSplit(args.data, args.limit);
  let dets: EvalDetection[];
  let what: string;
  if (args.predictions) {
    dets = parsePredictions(JSON.parse(await readFile(args.predictions, 'utf8')), args.predictions);
    const ids = new Set(split.dataset.images.map((im) => im.id));
    dets = dets.filter((d) => ids.has(d.imageId));
    what = `predictions ${args.predictions}`;
  } else {
    const file = await readSafetensorsFile(args.weights, maskrcnnParseOptions);
    const ctx = await GpuContext.create();
    const model = await loadMaskRCNN(ctx, file, args.options);
    const t0 = performance.now();
    try {
      dets = await predictSplit(model, split, (done, total) => {
        if (!args.json && process.stderr.isTTY) process.stderr.write(`\r${done}/${total} images`);
      });
    } finally {
      model.destroy();
      ctx.device.destroy();
    }
    if (!args.json && process.stderr.isTTY) process.stderr.write('\n');
    what = `maskgpu on ${describeAdapter(ctx.report)}, ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  }
  const metrics: CocoMetrics = evaluateCoco(split.dataset, dets);
  if (args.predictionsOut) await writeFileAtomic(args.predictionsOut, new TextEncoder().encode(JSON.stringify(toResults(dets))), { force: args.force });
  if (args.json) console.log(JSON.stringify(metrics, null, 1));
  else {
    console.log(`${args.data}: ${split.dataset.images.length} images; ${what}`);
    console.log(formatMetrics(metrics));
  }
  return 0;
}
