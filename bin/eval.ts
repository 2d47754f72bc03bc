// `maskgpu eval [--weights W] [--data DIR] [--limit N] [--predictions-out F] [--predictions F] [--json]`:
// runs the engine over a COCO-format split (DIR/annotations.json + the images it names) and prints
// COCO box/mask AP@[.5:.95], AP50, AP75 and the mean mask IoU of matched instances (eval/coco.ts),
// the numbers tools/eval_torchvision.py gives for torchvision's own predictions on the same weights.
// With --predictions it scores a COCO results file instead of running the model. While the model
// runs, progress and an ETA go to stderr (io/progress.ts; none with --json).

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN } from '../engine/maskrcnn/model.ts';
import type { MaskRCNNOptions } from '../engine/maskrcnn/options.ts';
import { evaluateCoco, formatMetrics, type CocoMetrics, type EvalDetection } from '../eval/coco.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile, writeFileAtomic } from '../weights-loader/node.ts';
import { parseCommandLine } from '../io/args.ts';
import { BUNDLED_MODEL } from '../io/bundled.ts';
import { createProgress } from '../io/progress.ts';
import { DEFAULT_SPLIT, loadSplit, parsePredictions, predictSplit, toResults } from '../io/split.ts';
import { useCachedConvTiling } from '../io/tiles.ts';
import { recordCompiledKernels, useCompiledKernels } from '../io/kernelCache.ts';

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

export const EVAL_USAGE = `usage: maskgpu eval [--weights W.safetensors] [--data DIR] [--limit N] [--score-thresh S]
                   [--predictions-out F.json [--force]] [--predictions F.json] [--json]
  --data DIR          folder with a COCO annotations.json and its images (default: data/shapes/test,
                      in maskgpu's git checkout; the npm package does not ship it)
  --weights W         model (default: the bundled models/maskgpu-shapes.safetensors)
  --limit N           only the first N images
  --score-thresh S    box score threshold (default 0.05, torchvision's and COCO evaluation's)
  --predictions-out F also write the detections as a COCO results file (uncompressed RLE)
  --force             replace the --predictions-out file if it exists
  --predictions F     score this COCO results file instead of running the model
  --json              print the metrics as JSON`;

const EVAL_OPTIONS = {
  command: 'maskgpu eval',
  options: {
    weights: { type: 'string', default: BUNDLED_MODEL },
    data: { type: 'string', default: DEFAULT_SPLIT },
    limit: { type: 'number', integer: true, min: 1 },
    'score-thresh': { type: 'number', min: 0, max: 1 },
    predictions: { type: 'string' },
    'predictions-out': { type: 'string' },
    json: { type: 'boolean' },
    force: { type: 'boolean' },
  },
} as const;

/** The command line of `maskgpu eval`; undefined for --help. Throws a UsageError on a bad one. */
function parseEvalArgs(argv: string[]): EvalArgs | undefined {
  const parsed = parseCommandLine(argv, EVAL_OPTIONS);
  if (!parsed) return undefined;
  const v = parsed.values;
  const options: MaskRCNNOptions = v['score-thresh'] === undefined ? {} : { boxScoreThresh: v['score-thresh'] };
  return { weights: v.weights, data: v.data, limit: v.limit, predictions: v.predictions, predictionsOut: v['predictions-out'], json: v.json, force: v.force, options };
}

export async function evalCommand(argv: string[]): Promise<number> {
  const args = parseEvalArgs(argv);
  if (!args) {
    console.log(EVAL_USAGE);
    return 0;
  }
  if (args.data === DEFAULT_SPLIT && !existsSync(DEFAULT_SPLIT)) {
    throw new Error(`the bundled shapes test split (${DEFAULT_SPLIT}) is in maskgpu's git checkout, not in the npm package: pass --data DIR, a folder with a COCO annotations.json and its images`);
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
    useCachedConvTiling(ctx);
    // Tuned kernels earlier runs compiled; the others start as quick stand-ins and the model
    // compiles them on a second device while the split runs (engine/tiers.ts).
    useCompiledKernels(ctx);
    const model = await loadMaskRCNN(ctx, file, args.options);
    const t0 = performance.now();
    const progress = createProgress({ label: 'eval', total: split.dataset.images.length, silent: args.json });
    try {
      dets = await predictSplit(model, split, (_done, _total, fileName) => progress.tick(1, fileName));
    } finally {
      progress.done();
      try {
        recordCompiledKernels(ctx.report, ctx.compiledKernelKeys());
      } catch (e) {
        console.error(`maskgpu: could not record the compiled kernels (${(e as Error).message}); the next run starts on quick kernels again`);
      }
      model.destroy();
      ctx.device.destroy();
    }
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
