// End-to-end benchmark of pruning: dense vs compacted Mask R-CNN at several ratios, the measured
// segment() time next to the parameter count, compression rate and GMAC ratio. Each compacted
// model is validated before it is timed: its detections must equal those of the same pruning in
// mask mode (same plan, shapes unchanged), which is what compaction promises (eval/match.ts's
// sameDetections, the SAME_DETECTIONS gate).
//
//   node --import ./tools/register.mjs bench/prune.ts [--weights W.safetensors] [--size HxW]
//        [--ratios 0,0.2,0.4,0.6] [--repeats 3] [--scope global|layer] [--normalize none|mean|fanin]
//        [--coupled leave|prune] [--granularity filter|kernel] [--score-thresh S] [--skip-validate] [--json out.json]
//
// Timing runs with box score threshold 0 by default, so that every model sends the same 100
// detections through the mask head (the work the GMAC count assumes) whatever pruning did to
// its scores; validation uses torchvision's 0.05.
// Default: the golden model on golden image_0 (seconds); --size upsamples that image (nearest)
// to H x W, e.g. --weights full.safetensors --size 480x640 for the full-size architecture.

import { readFileSync, writeFileSync } from 'node:fs';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN, type Detection } from '../engine/maskrcnn/model.ts';
import { resizePlan } from '../engine/kernels/preprocess.ts';
import { prune, type PruneOptions } from '../prune/index.ts';
import { loadMaskRCNNWeights, maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors, type SafetensorsFile } from '../weights-loader/safetensors.ts';
import { decodePng, type RgbImage } from '../io/image.ts';
import { parseScriptArgs } from '../io/args.ts';
import { sameDetections } from '../eval/match.ts';
import { median } from './timing.ts';
import { useCachedConvTiling } from '../io/tiles.ts';

const { values: opt } = parseScriptArgs({
  command: 'npm run bench:prune --',
  usage: `usage: npm run bench:prune -- [--weights W.safetensors] [--size HxW] [--ratios 0,0.2,0.4,0.6] [--repeats 3]
       [--scope global|layer] [--normalize none|mean|fanin] [--coupled leave|prune] [--granularity filter|kernel]
       [--score-thresh S] [--skip-validate] [--json out.json]   (see the header of bench/prune.ts)`,
  options: {
    weights: { type: 'string' },
    size: { type: 'string' },
    ratios: { type: 'string', default: '0,0.2,0.4,0.6' },
    repeats: { type: 'number', integer: true, min: 1, default: 3 },
    scope: { type: 'string' },
    normalize: { type: 'string' },
    coupled: { type: 'string' },
    granularity: { type: 'string' },
    'score-thresh': { type: 'number', min: 0, default: 0 },
    'skip-validate': { type: 'boolean' },
    json: { type: 'string' },
  },
});
const golden = new URL('../tests/fixtures/golden/', import.meta.url);
const weightsPath = opt.weights ?? new URL('model.safetensors', golden).pathname;
const ratios = opt.ratios.split(',').map(Number);
const repeats = opt.repeats;
const scoreThresh = opt['score-thresh'];
const base: Omit<PruneOptions, 'ratio'> & { inputSize?: [number, number] } = {
  scope: opt.scope as PruneOptions['scope'],
  normalize: opt.normalize as PruneOptions['normalize'],
  coupled: opt.coupled as PruneOptions['coupled'],
  granularity: opt.granularity as PruneOptions['granularity'],
};

function upsample(image: RgbImage, h: number, w: number): RgbImage {
  const data = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const s = (Math.floor((y * image.height) / h) * image.width + Math.floor((x * image.width) / w)) * 3;
      data.set(image.data.subarray(s, s + 3), (y * w + x) * 3);
    }
  return { width: w, height: h, data };
}

async function detect(ctx: GpuContext, file: SafetensorsFile, image: RgbImage): Promise<Detection[]> {
  const model = await loadMaskRCNN(ctx, file);
  try {
    return (await model.segment(image)).detections;
  } finally {
    model.destroy();
  }
}

async function timeModel(ctx: GpuContext, file: SafetensorsFile, image: RgbImage): Promise<{ ms: number; gpuMs: number; detections: Detection[] }> {
  const model = await loadMaskRCNN(ctx, file, { boxScoreThresh: scoreThresh });
  try {
    const first = await model.segment(image); // compiles the plan for this size
    const total: number[] = [];
    const gpu: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const r = await model.segment(image);
      total.push(r.timingsMs.total);
      gpu.push(r.timingsMs.gpu);
    }
    return { ms: median(total), gpuMs: median(gpu), detections: first.detections };
  } finally {
    model.destroy();
  }
}

const ctx = await GpuContext.create();
ctx.setKernelTiers('tuned'); // timed runs use the tuned kernels from the first run on (bench:coldstart measures the tiers)
useCachedConvTiling(ctx); // the tuned conv tiles, as the CLI uses them
const file = parseSafetensors(new Uint8Array(readFileSync(weightsPath)), maskrcnnParseOptions);
let image = decodePng(new Uint8Array(readFileSync(new URL('image_0.png', golden))), 'image_0.png');
const size = opt.size;
if (size) {
  const m = /^(\d+)x(\d+)$/.exec(size);
  if (!m) throw new Error(`--size needs HxW, e.g. 480x640, got '${size}'`);
  image = upsample(image, Number(m[1]), Number(m[2]));
}
// Count GMACs at the padded size this image really runs at.
const meta = loadMaskRCNNWeights(file).meta;
const plan = resizePlan(image.height, image.width, meta.minSize, meta.maxSize);
base.inputSize = [plan.paddedH, plan.paddedW];
console.log(`adapter: ${describeAdapter(ctx.report)}\nweights: ${weightsPath}; image ${image.width}x${image.height}; median of ${repeats} after a warm-up; options ${JSON.stringify(base)}`);

const rows: Array<Record<string, number | string>> = [];
let denseMs = 0;
let inputSize: [number, number] = [0, 0];
for (const ratio of ratios) {
  const t0 = performance.now();
  const { file: pruned, report } = await prune(ctx, file, { ...base, ratio, mode: 'compact' });
  const pruneMs = performance.now() - t0;
  const timed = await timeModel(ctx, pruned, image);
  if (!opt['skip-validate']) {
    const masked = await prune(ctx, file, { ...base, ratio, mode: 'mask' });
    const problem = sameDetections(await detect(ctx, pruned, image), await detect(ctx, masked.file, image));
    if (problem) throw new Error(`ratio ${ratio}: the compacted model does not reproduce the masked one (${problem}); not timing a wrong model`);
  }
  if (ratio === 0) denseMs = timed.ms;
  const s = report.summary;
  inputSize = s.gmacs.inputSize;
  rows.push({
    ratio,
    channels: s.channels.ratio,
    params: s.params.after,
    compression: s.params.compressionRate,
    gmacs: s.gmacs.after.total,
    gmacRatio: s.gmacs.ratio,
    ms: Math.round(timed.ms),
    exactMs: timed.ms,
    gpuMs: Math.round(timed.gpuMs),
    speedup: denseMs ? Math.round((100 * denseMs) / timed.ms) / 100 : NaN,
    detections: timed.detections.length,
    pruneMs: Math.round(pruneMs),
  });
}

console.log(`\nGMACs at the report's input size ${inputSize[0]}x${inputSize[1]} (1000 RoIs, 100 masks); time: segment() of the ${image.width}x${image.height} image, score threshold ${scoreThresh}\n`);
console.log('| ratio | channels removed | params | compression | GMACs | GMAC ratio | time ms (gpu) | time ratio | speedup | detections | prune ms |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const timeRatio = denseMs ? (Number(r.exactMs) / denseMs).toFixed(3) : '-';
  console.log(`| ${r.ratio} | ${(100 * Number(r.channels)).toFixed(1)} % | ${r.params} | ${Number(r.compression).toFixed(3)} | ${r.gmacs} | ${Number(r.gmacRatio).toFixed(3)} | ${r.ms} (${r.gpuMs}) | ${timeRatio} | ${r.speedup}x | ${r.detections} | ${r.pruneMs} |`);
}
const json = opt.json;
if (json) writeFileSync(json, JSON.stringify({ adapter: ctx.report, weights: weightsPath, image: [image.height, image.width], options: base, rows }, null, 1));
ctx.device.destroy();
