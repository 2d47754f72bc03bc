// The pruning experiment (`npm run experiment`): prunes the bundled model at 10-80 % for global and
// layer scope, filter and kernel granularity, with the exact compensation (carrier channels + bias
// folding), without any (constants dropped) and, for global filter pruning, with the plain bias
// fold; and layer-scope filter pruning calibrated on unlabeled images (prune()'s `calibration`:
// BatchNorm statistics alone, and with the least-squares reconstruction) on the val split's
// images, a split the evaluation never sees; evaluates each on the test split (COCO mask/box AP,
// mean matched mask IoU) and measures parameters, compression rate, GMACs, latency (pruned and
// dense alternately on the same image, so the ratio is measured side by side) and the
// calibration's time. Writes results/pruning.{json,md,svg}.
//
//   npm run experiment [-- --data DIR] [--limit N] [--ratios 0.1,0.2] [--curves 'global filter;layer kernel'] [--repeats N]
//                      [--calibrate DIR] [--calibration-images N] [--lsq-images N]
//                      [--resume] [--report-only] [--latency-only] [--out DIR]
// --resume continues an interrupted run and keeps the previous file's entries of curves not run now.
// --latency-only re-times an existing results/pruning.json on a quiet machine (accuracy is deterministic).

import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN, type MaskRCNN, type RgbImage } from '../engine/maskrcnn/model.ts';
import { prune, type CalibrationImage, type CalibrationMode, type PruneOptions, type PruneReport } from '../prune/index.ts';
import { readCalibrationImages } from '../io/calibrationImages.ts';
import { createProgress } from '../io/progress.ts';
import { evaluateCoco, type CocoMetrics } from '../eval/coco.ts';
import { loadSplit, predictSplit, DEFAULT_SPLIT } from '../io/split.ts';
import { readImageFile } from '../io/image.ts';
import { BUNDLED_MODEL } from '../io/bundled.ts';
import { parseScriptArgs } from '../io/args.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile, writeFileAtomic } from '../weights-loader/node.ts';
import { renderChart, renderMarkdown } from './report.ts';
import { useCachedConvTiling } from '../io/tiles.ts';

export interface Curve {
  name: string;
  scope: 'global' | 'layer';
  granularity: 'filter' | 'kernel';
  compensation: 'carrier' | 'bias' | 'none';
  normalize?: 'mean';
  /** Calibrated on unlabeled images after pruning (prune()'s `calibration.mode`). */
  calibration?: CalibrationMode;
}

export const CURVES: Curve[] = [
  { name: 'global filter', scope: 'global', granularity: 'filter', compensation: 'carrier' },
  { name: 'global filter, mean-normalised', scope: 'global', granularity: 'filter', compensation: 'carrier', normalize: 'mean' },
  { name: 'layer filter', scope: 'layer', granularity: 'filter', compensation: 'carrier' },
  { name: 'global filter, no comp.', scope: 'global', granularity: 'filter', compensation: 'none' },
  { name: 'layer filter, no comp.', scope: 'layer', granularity: 'filter', compensation: 'none' },
  { name: 'global kernel', scope: 'global', granularity: 'kernel', compensation: 'carrier' },
  { name: 'layer kernel', scope: 'layer', granularity: 'kernel', compensation: 'carrier' },
  { name: 'global kernel, no comp.', scope: 'global', granularity: 'kernel', compensation: 'none' },
  { name: 'layer kernel, no comp.', scope: 'layer', granularity: 'kernel', compensation: 'none' },
  { name: 'layer filter, bias fold', scope: 'layer', granularity: 'filter', compensation: 'bias' },
  { name: 'layer filter, calibrated: stats', scope: 'layer', granularity: 'filter', compensation: 'carrier', calibration: 'stats' },
  { name: 'layer filter, calibrated: stats+lsq', scope: 'layer', granularity: 'filter', compensation: 'carrier', calibration: 'stats+lsq' },
];

export interface Entry {
  curve: string;
  ratio: number;
  metrics: CocoMetrics;
  params: number;
  nonzeroParams: number;
  compression: number;
  gmacs: number;
  gmacsEffective: number;
  gmacRatio: number;
  channelsRemoved: number;
  latencyMs: number;
  denseLatencyMs: number;
  latencyRatio: number;
  pruneMs: number;
  evalSeconds: number;
  /** Prunable groups left with at most 2 channels: name -> [kept, total]. */
  nearlyEmptied?: Record<string, [number, number]>;
  /** Runs per model the latency is the median of, when measured in a later run than the file's `repeats` describe (--resume). */
  repeats?: number;
  /** Calibrated curves: seconds the calibration took (within pruneMs), images for the statistics and for the least squares. */
  calibration?: { seconds: number; images: number; lsqImages?: number; peakGpuMiB: number };
}

export interface Results {
  weights: string;
  weightsSha256: string;
  data: string;
  images: number;
  adapter: string;
  latencyImage: string;
  repeats: number;
  command: string;
  /** Set when the latencies were re-measured separately (--latency-only). */
  latencyCommand?: string;
  date: string;
  /** Where the calibrated curves' unlabeled images came from. */
  calibrationData?: string;
  dense: Entry;
  entries: Entry[];
}

interface Args {
  data: string;
  limit?: number;
  ratios: number[];
  repeats: number;
  resume: boolean;
  reportOnly: boolean;
  latencyOnly: boolean;
  out: string;
  curves: Curve[];
  calibrate: string;
  calibrationImages: number;
  lsqImages: number;
}

const USAGE = `usage: npm run experiment [-- --data DIR] [--limit N] [--ratios 0.1,0.2] [--curves 'global filter;layer kernel'] [--repeats N]
                          [--calibrate DIR] [--calibration-images N] [--lsq-images N]
                          [--resume] [--report-only] [--latency-only] [--out DIR]   (see the header of experiments/pruning.ts)
  curves: ${CURVES.map((c) => `'${c.name}'`).join('; ')}`;

function parseArgs(argv: string[]): Args {
  const { values: v } = parseScriptArgs(
    {
      command: 'npm run experiment --',
      usage: USAGE,
      options: {
        data: { type: 'string', default: DEFAULT_SPLIT },
        limit: { type: 'number', integer: true, min: 1 },
        ratios: { type: 'string' },
        repeats: { type: 'number', default: 5 },
        resume: { type: 'boolean' },
        'report-only': { type: 'boolean' },
        'latency-only': { type: 'boolean' },
        out: { type: 'string', default: 'results' },
        curves: { type: 'string' },
        calibrate: { type: 'string', default: 'data/shapes/val/images' },
        'calibration-images': { type: 'number', integer: true, min: 1, default: 100 },
        'lsq-images': { type: 'number', integer: true, min: 1, default: 16 },
      },
    },
    argv,
  );
  const a: Args = {
    data: v.data, limit: v.limit, ratios: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], repeats: v.repeats, resume: v.resume, reportOnly: v['report-only'],
    latencyOnly: v['latency-only'], out: v.out, curves: CURVES, calibrate: v.calibrate, calibrationImages: v['calibration-images'], lsqImages: v['lsq-images'],
  };
  if (v.ratios !== undefined) a.ratios = v.ratios.split(',').map(Number);
  if (v.curves !== undefined) {
    const names = v.curves.split(';').map((n) => n.trim());
    a.curves = CURVES.filter((c) => names.includes(c.name));
    if (a.curves.length !== names.length) throw new Error(`--curves: ';'-separated, from ${CURVES.map((c) => `'${c.name}'`).join('; ')}`);
  }
  if (a.ratios.some((r) => !(r > 0 && r < 1))) throw new Error('--ratios: fractions in (0, 1), comma-separated');
  if (!(Number.isInteger(a.repeats) && a.repeats >= 1)) throw new Error('--repeats: a positive integer');
  return a;
}

function nearlyEmptied(report: PruneReport): Record<string, [number, number]> {
  return Object.fromEntries(report.groups.filter((g) => g.prunable && g.kept <= 2 && g.total > 2).map((g) => [g.name, [g.kept, g.total]]));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Median segment() times of two models, run alternately (after one warm-up each) on one image. */
async function sideBySide(a: MaskRCNN, b: MaskRCNN, image: RgbImage, repeats: number): Promise<[number, number]> {
  await a.segment(image);
  await b.segment(image);
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < repeats; i++) {
    ta.push((await a.segment(image)).timingsMs.total);
    tb.push((await b.segment(image)).timingsMs.total);
  }
  return [median(ta), median(tb)];
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.reportOnly) {
    const r = JSON.parse(await readFile(join(args.out, 'pruning.json'), 'utf8')) as Results;
    await writeFileAtomic(join(args.out, 'pruning.md'), new TextEncoder().encode(renderMarkdown(r)), { force: true });
    await writeFileAtomic(join(args.out, 'pruning.svg'), new TextEncoder().encode(renderChart(r)), { force: true });
    console.log(`wrote ${args.out}/pruning.md, pruning.svg from pruning.json`);
    return;
  }
  if (args.latencyOnly) return remeasureLatency(args);
  const bytes = new Uint8Array(await readFile(BUNDLED_MODEL));
  const sha = createHash('sha256').update(bytes).digest('hex');
  const file = await readSafetensorsFile(BUNDLED_MODEL, maskrcnnParseOptions);
  const split = await loadSplit(args.data, args.limit);
  const latencyImage = 'models/samples/shapes_2.png';
  const image = await readImageFile(latencyImage);
  const ctx = await GpuContext.create();
  ctx.setKernelTiers('tuned'); // timed runs use the tuned kernels from the first run on (bench:coldstart measures the tiers)
  useCachedConvTiling(ctx); // the tuned conv tiles, as the CLI uses them
  const jsonPath = join(args.out, 'pruning.json');
  await mkdir(args.out, { recursive: true });

  let previous: Results | undefined;
  if (args.resume && existsSync(jsonPath)) {
    const r = JSON.parse(await readFile(jsonPath, 'utf8')) as Results;
    if (r.weightsSha256 === sha && r.images === split.dataset.images.length) previous = r;
    else console.log(`${jsonPath} is for other weights or another split: starting over`);
  }
  const evaluate = async (model: MaskRCNN, what: string) => {
    const t0 = performance.now();
    const progress = createProgress({ label: `eval ${what}`, total: split.dataset.images.length });
    const dets = await predictSplit(model, split, () => progress.tick());
    progress.done();
    return { metrics: evaluateCoco(split.dataset, dets), seconds: (performance.now() - t0) / 1000 };
  };
  // The calibrated curves' unlabeled images, read once (only if a calibrated curve will run).
  let calibrationImages: CalibrationImage[] | undefined;
  const calibrationSet = async () => (calibrationImages ??= await readCalibrationImages(args.calibrate, args.calibrationImages));

  const dense = await loadMaskRCNN(ctx, file);
  const results: Results = {
    weights: 'models/maskgpu-shapes.safetensors',
    weightsSha256: sha,
    data: args.data.replace(process.cwd() + '/', ''),
    images: split.dataset.images.length,
    adapter: describeAdapter(ctx.report),
    latencyImage,
    // Kept entries keep their provenance: the file's latency settings stay those they were measured with.
    repeats: previous?.repeats ?? args.repeats,
    latencyCommand: previous?.latencyCommand,
    // --resume only continues an interrupted run: the command that reproduces it is the same without.
    command: ['npm run experiment', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2).filter((a) => a !== '--resume')] : [])].join(' ').replace(/ --$/, ''),
    date: new Date().toISOString().slice(0, 10),
    calibrationData: args.curves.some((c) => c.calibration) ? args.calibrate : previous?.calibrationData,
    dense: previous?.dense ?? (undefined as unknown as Entry),
    // --resume keeps what the previous file holds for curves not run now.
    entries: previous?.entries.filter((e) => !args.curves.some((c) => c.name === e.curve)) ?? [],
  };
  if (!results.dense) {
    const { metrics, seconds } = await evaluate(dense, 'dense');
    const counted = await prune(ctx, file, { ratio: 0 });
    const s = counted.report.summary;
    const [t] = await sideBySide(dense, dense, image, args.repeats);
    results.dense = {
      curve: 'dense', ratio: 0, metrics, params: s.params.before, nonzeroParams: s.params.nonzeroBefore, compression: 1,
      gmacs: s.gmacs.before.total, gmacsEffective: s.gmacs.before.total, gmacRatio: 1, channelsRemoved: 0,
      latencyMs: t, denseLatencyMs: t, latencyRatio: 1, pruneMs: 0, evalSeconds: seconds,
    };
  }
  const d = results.dense;
  console.log(`dense: mask AP ${d.metrics.maskAP.toFixed(3)} AP50 ${d.metrics.maskAP50.toFixed(3)} | box AP ${d.metrics.boxAP.toFixed(3)} | mean IoU ${d.metrics.meanIoU.toFixed(3)} | ${(d.params / 1e6).toFixed(2)} M params | ${d.gmacs.toFixed(2)} GMAC | ${d.latencyMs.toFixed(0)} ms`);

  const save = () => writeFileAtomic(jsonPath, new TextEncoder().encode(JSON.stringify(results, null, 1) + '\n'), { force: true });
  for (const curve of args.curves) {
    for (const ratio of args.ratios) {
      const done = previous?.entries.find((e) => e.curve === curve.name && e.ratio === ratio);
      if (done) {
        results.entries.push(done);
        continue;
      }
      const options: PruneOptions = { ratio, scope: curve.scope, granularity: curve.granularity, compensation: curve.compensation, normalize: curve.normalize ?? 'none' };
      const label = `${curve.name} ${(ratio * 100).toFixed(0)} %`;
      let calibration: Parameters<typeof prune>[2]['calibration'];
      if (curve.calibration) {
        const bars = new Map<string, ReturnType<typeof createProgress>>();
        calibration = {
          images: await calibrationSet(),
          mode: curve.calibration,
          leastSquares: { images: args.lsqImages },
          onProgress: (phase, done, total) => {
            let bar = bars.get(phase);
            if (!bar) bars.set(phase, (bar = createProgress({ label: `calibrate ${label}: ${phase}`, total })));
            bar.tick();
            if (done >= total) bar.done();
          },
        };
      }
      const t0 = performance.now();
      const { file: pruned, report } = await prune(ctx, file, { ...options, calibration });
      const pruneMs = performance.now() - t0;
      const model = await loadMaskRCNN(ctx, pruned);
      try {
        const { metrics, seconds } = await evaluate(model, label);
        const [tp, td] = await sideBySide(model, dense, image, args.repeats);
        const s = report.summary;
        const e: Entry = {
          curve: curve.name, ratio, metrics,
          params: s.params.after, nonzeroParams: s.params.nonzeroAfter, compression: s.params.compressionRate,
          gmacs: s.gmacs.after.total, gmacsEffective: s.gmacs.effectiveAfter.total, gmacRatio: s.gmacs.after.total / s.gmacs.before.total,
          channelsRemoved: s.channels.removed, nearlyEmptied: nearlyEmptied(report), latencyMs: tp, denseLatencyMs: td, latencyRatio: tp / td, pruneMs, evalSeconds: seconds,
        };
        if (previous && (args.repeats !== previous.repeats || previous.latencyCommand)) e.repeats = args.repeats;
        const c = report.calibration;
        if (c) e.calibration = { seconds: c.seconds, images: c.images, lsqImages: c.leastSquares?.images, peakGpuMiB: c.peakGpuBytes / 2 ** 20 };
        results.entries.push(e);
        console.log(
          `${curve.name.padEnd(26)} ${(ratio * 100).toFixed(0).padStart(2)} %: mask AP ${metrics.maskAP.toFixed(3)} AP50 ${metrics.maskAP50.toFixed(3)} | box AP ${metrics.boxAP.toFixed(3)} | IoU ${metrics.meanIoU.toFixed(3)} | ` +
            `x${e.compression.toFixed(2)} params | GMAC x${e.gmacRatio.toFixed(3)} | latency x${e.latencyRatio.toFixed(3)} (${tp.toFixed(0)}/${td.toFixed(0)} ms) | eval ${seconds.toFixed(0)} s` +
            (c ? ` | calibration ${c.seconds.toFixed(0)} s on ${c.images}${c.leastSquares ? `/${c.leastSquares.images}` : ''} images` : ''),
        );
      } finally {
        model.destroy();
      }
      await save();
    }
  }
  dense.destroy();
  ctx.device.destroy();
  await save();
  await writeFileAtomic(join(args.out, 'pruning.md'), new TextEncoder().encode(renderMarkdown(results)), { force: true });
  await writeFileAtomic(join(args.out, 'pruning.svg'), new TextEncoder().encode(renderChart(results)), { force: true });
  console.log(`wrote ${args.out}/pruning.json, pruning.md, pruning.svg`);
}

/**
 * Re-measures only the latencies of an existing pruning.json (accuracy is deterministic; timing
 * needs a quiet machine): each entry is pruned again and timed side by side with the dense model.
 */
async function remeasureLatency(args: Args): Promise<void> {
  const jsonPath = join(args.out, 'pruning.json');
  const r = JSON.parse(await readFile(jsonPath, 'utf8')) as Results;
  const file = await readSafetensorsFile(BUNDLED_MODEL, maskrcnnParseOptions);
  const image = await readImageFile(r.latencyImage);
  const ctx = await GpuContext.create();
  ctx.setKernelTiers('tuned'); // timed runs use the tuned kernels from the first run on (bench:coldstart measures the tiers)
  useCachedConvTiling(ctx); // the tuned conv tiles, as the CLI uses them
  const dense = await loadMaskRCNN(ctx, file);
  const [t] = await sideBySide(dense, dense, image, args.repeats);
  r.dense.latencyMs = r.dense.denseLatencyMs = t;
  for (const e of r.entries) {
    const curve = CURVES.find((c) => c.name === e.curve);
    if (!curve) throw new Error(`${jsonPath}: unknown curve '${e.curve}'`);
    // A calibrated model has the uncalibrated one's shapes but other detections (whose count costs
    // mask-head, paste and RLE time): its latency stays as measured with its own weights.
    if (curve.calibration) continue;
    // Calibration changes values, not shapes: the uncalibrated file times the same.
    const { file: pruned, report } = await prune(ctx, file, { ratio: e.ratio, scope: curve.scope, granularity: curve.granularity, compensation: curve.compensation, normalize: curve.normalize ?? 'none' });
    e.nearlyEmptied = nearlyEmptied(report);
    const model = await loadMaskRCNN(ctx, pruned);
    try {
      [e.latencyMs, e.denseLatencyMs] = await sideBySide(model, dense, image, args.repeats);
      e.latencyRatio = e.latencyMs / e.denseLatencyMs;
      delete e.repeats;
    } finally {
      model.destroy();
    }
    console.log(`${e.curve.padEnd(32)} ${(e.ratio * 100).toFixed(0).padStart(2)} %: latency x${e.latencyRatio.toFixed(3)} (${e.latencyMs.toFixed(0)}/${e.denseLatencyMs.toFixed(0)} ms), GMAC x${e.gmacRatio.toFixed(3)}`);
  }
  dense.destroy();
  ctx.device.destroy();
  r.repeats = args.repeats;
  r.latencyCommand = `npm run experiment -- --latency-only --repeats ${args.repeats}`;
  await writeFileAtomic(jsonPath, new TextEncoder().encode(JSON.stringify(r, null, 1) + '\n'), { force: true });
  await writeFileAtomic(join(args.out, 'pruning.md'), new TextEncoder().encode(renderMarkdown(r)), { force: true });
  await writeFileAtomic(join(args.out, 'pruning.svg'), new TextEncoder().encode(renderChart(r)), { force: true });
  console.log(`re-measured ${r.entries.length} latencies into ${jsonPath}, pruning.md, pruning.svg`);
}

main().catch((e) => {
  console.error(`experiment: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
