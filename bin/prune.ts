// `maskgpu prune --weights IN --ratio R [--scope global|layer] [--granularity filter|kernel]
// [--mode compact|mask] [--round-to N] [--normalize none|mean|fanin] --out OUT [--report R.json]
// [--force]` and the finer options below: L1-norm pruning of a Mask R-CNN safetensors file
// (prune/), optionally calibrated on a folder of unlabeled images (--calibrate DIR). Never writes
// over its input; refuses to replace OUT (or the report) without --force (io/outputs.ts); reads
// every calibration image before any GPU work and writes nothing when pruning or calibration
// fails; writes atomically.

import { GpuContext, type KernelTiers } from '../engine/gpu.ts';
import { useCompiledKernels } from '../io/kernelCache.ts';
import { formatReport, prune, resolvePruneOptions, type PruneOptions } from '../prune/index.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile, writeFileAtomic } from '../weights-loader/node.ts';
import { serializeSafetensors } from '../weights-loader/safetensors.ts';
import { parseCommandLine, UsageError } from '../io/args.ts';
import { checkOutputFiles } from '../io/outputs.ts';
import { createProgress, type Progress } from '../io/progress.ts';
import { CALIBRATION_MODES, type CalibrationImage, type CalibrationMode } from '../prune/calibrationOptions.ts';
import { readCalibrationImages } from '../io/calibrationImages.ts';

export const PRUNE_USAGE = `usage: maskgpu prune --weights IN.safetensors --ratio R --out OUT.safetensors [options]

  --ratio R                 fraction of prunable channels (or kernels) to remove, 0 <= R < 1
  --scope global|layer      one L1 threshold over all filters (default, the study) or R in every layer
  --granularity filter|kernel   whole output channels (default) or single k x k kernels (zeroed)
  --mode compact|mask       remove the channels (default) or zero them with shapes unchanged
  --normalize none|mean|fanin   per-layer normalisation of L1 norms for global ranking (default none)
  --coupled leave|prune     residual/FPN-coupled channel groups: leave whole (default) or prune as one
  --compensation carrier|bias|none   how removed channels' constants are kept (default carrier: exact; none: dropped)
  --bn-scale                score filters by L1 x |BN scale| instead of the raw conv weight
  --round-to N              kept channel counts are multiples of N (default 1)
  --min-channels N          every layer keeps at least N channels (default 1)
  --max-layer-ratio X       at most X of one layer's channels go (default 1)
  --include PATTERN         prune only layers matching ('*' glob or /regex/; repeatable)
  --exclude PATTERN         never prune layers matching (repeatable)
  --input-size HxW          input size for the report's GMACs (default: 3:2 at the model's min_size)
  --dtype f32|f16           output float type (default: f16 if the input is all f16, else f32)
  --calibrate DIR           calibrate the pruned model on the PNG/JPEG images in DIR (unlabeled)
  --calibration-images N    use the first N images of DIR by name (default: all of them)
  --calibration-mode M      stats (re-estimate the BatchNorm statistics), lsq (refit the pruned
                            layers by least squares to the unpruned model's outputs) or stats+lsq
                            (default; stats where lsq does not apply: --mode mask, kernel granularity)
  --lsq-images N            images (the first of those) the least squares use (default 16)
  --kernels T               tiered|tuned|quick for the calibration passes (default tiered: the tuned
                            kernels earlier runs compiled here, quick stand-ins for the others)
  --report R.json           also write the full report as JSON
  --force                   replace OUT / the report if they exist (never the input)`;

export interface PruneArgs {
  weights: string;
  out: string;
  report?: string;
  force: boolean;
  dtype?: 'F32' | 'F16';
  options: PruneOptions;
  calibration?: { dir: string; count?: number; mode?: CalibrationMode; lsqImages?: number };
  kernels: KernelTiers;
}

const PRUNE_OPTIONS = {
  command: 'maskgpu prune',
  options: {
    weights: { type: 'string' },
    out: { type: 'string' },
    report: { type: 'string' },
    force: { type: 'boolean' },
    ratio: { type: 'number' },
    scope: { type: 'string' },
    granularity: { type: 'string' },
    mode: { type: 'string' },
    normalize: { type: 'string' },
    coupled: { type: 'string' },
    compensation: { type: 'string' },
    'bn-scale': { type: 'boolean' },
    'round-to': { type: 'number' },
    'min-channels': { type: 'number' },
    'max-layer-ratio': { type: 'number' },
    include: { type: 'strings' },
    exclude: { type: 'strings' },
    'input-size': { type: 'string' },
    dtype: { type: 'string' },
    calibrate: { type: 'string' },
    'calibration-images': { type: 'number' },
    'calibration-mode': { type: 'string' },
    'lsq-images': { type: 'number' },
    kernels: { type: 'string', choices: ['tiered', 'tuned', 'quick'] },
  },
} as const;

/**
 * The command line of `maskgpu prune`; undefined for --help. Throws a UsageError on a bad one,
 * and resolvePruneOptions' error on bad option values, before anything is read.
 */
export function parsePruneArgs(argv: string[]): PruneArgs | undefined {
  const parsed = parseCommandLine(argv, PRUNE_OPTIONS);
  if (!parsed) return undefined;
  const v = parsed.values;
  if (!v.weights) throw new UsageError(`--weights IN is required\n\n${PRUNE_USAGE}`);
  if (!v.out) throw new UsageError(`--out OUT is required\n\n${PRUNE_USAGE}`);
  if (v.ratio === undefined) throw new UsageError(`--ratio R is required (e.g. --ratio 0.4)\n\n${PRUNE_USAGE}`);
  let inputSize: [number, number] | undefined;
  if (v['input-size'] !== undefined) {
    const m = /^(\d+)x(\d+)$/.exec(v['input-size']);
    if (!m) throw new UsageError(`--input-size needs HxW, e.g. 800x1216, got '${v['input-size']}'`);
    inputSize = [Number(m[1]), Number(m[2])];
  }
  let dtype: PruneArgs['dtype'];
  if (v.dtype !== undefined) {
    const d = v.dtype.toUpperCase();
    if (d !== 'F32' && d !== 'F16') throw new UsageError(`--dtype is '${v.dtype}': use f32 or f16`);
    dtype = d;
  }
  // Every given option, and only those: resolvePruneOptions fills in (and checks) the rest.
  const given = {
    ratio: v.ratio,
    scope: v.scope as PruneOptions['scope'],
    granularity: v.granularity as PruneOptions['granularity'],
    mode: v.mode as PruneOptions['mode'],
    normalize: v.normalize as PruneOptions['normalize'],
    coupled: v.coupled as PruneOptions['coupled'],
    compensation: v.compensation as PruneOptions['compensation'],
    bnScale: v['bn-scale'] || undefined,
    roundTo: v['round-to'],
    minChannels: v['min-channels'],
    maxLayerRatio: v['max-layer-ratio'],
    include: v.include,
    exclude: v.exclude,
    inputSize,
  };
  const options = Object.fromEntries(Object.entries(given).filter(([, x]) => x !== undefined)) as unknown as PruneOptions;
  resolvePruneOptions(options); // reject bad values before reading anything
  let calibration: PruneArgs['calibration'];
  const count = v['calibration-images'];
  const mode = v['calibration-mode'];
  const lsqImages = v['lsq-images'];
  if (v.calibrate === undefined) {
    if (count !== undefined || mode !== undefined || lsqImages !== undefined) throw new UsageError(`--calibration-images, --calibration-mode and --lsq-images need --calibrate DIR\n\n${PRUNE_USAGE}`);
  } else {
    if (!v.calibrate) throw new UsageError('--calibrate needs a folder of images');
    if (count !== undefined && !(Number.isSafeInteger(count) && count >= 1)) throw new UsageError(`--calibration-images is ${count}: give a positive integer`);
    if (mode !== undefined && !(CALIBRATION_MODES as readonly string[]).includes(mode)) throw new UsageError(`--calibration-mode is '${mode}': use one of ${CALIBRATION_MODES.join(', ')}`);
    if (lsqImages !== undefined && !(Number.isSafeInteger(lsqImages) && lsqImages >= 1)) throw new UsageError(`--lsq-images is ${lsqImages}: give a positive integer`);
    calibration = { dir: v.calibrate, count, mode: mode as CalibrationMode | undefined, lsqImages };
  }
  return { weights: v.weights, out: v.out, report: v.report, force: v.force, dtype, options, calibration, kernels: (v.kernels ?? 'tiered') as KernelTiers };
}

export async function pruneCommand(argv: string[]): Promise<number> {
  const args = parsePruneArgs(argv);
  if (!args) {
    console.log(PRUNE_USAGE);
    return 0;
  }
  await checkOutputFiles(args.weights, [['--out', args.out], ['--report', args.report]], args.force);
  const file = await readSafetensorsFile(args.weights, maskrcnnParseOptions);
  let images: CalibrationImage[] | undefined;
  if (args.calibration) {
    const reading = createProgress({ label: 'reading calibration images' });
    images = await readCalibrationImages(args.calibration.dir, args.calibration.count, () => reading.tick());
    reading.done();
  }
  const ctx = await GpuContext.create();
  ctx.setKernelTiers(args.kernels);
  useCompiledKernels(ctx); // the tuned kernels earlier runs compiled here (io/kernelCache.ts)
  const bars = new Map<string, Progress>();
  const onProgress = (phase: string, done: number, total: number) => {
    let bar = bars.get(phase);
    if (!bar) bars.set(phase, (bar = createProgress({ label: `calibrating: ${phase}`, total })));
    bar.tick();
    if (done >= total) bar.done();
  };
  try {
    const t0 = performance.now();
    const calibration = images && args.calibration ? { images, mode: args.calibration.mode, leastSquares: { images: args.calibration.lsqImages }, onProgress } : undefined;
    const { file: pruned, report } = await prune(ctx, file, { ...args.options, calibration });
    const allHalf = [...file.tensors.values()].every((t) => t.dtype === 'F16');
    const bytes = serializeSafetensors(pruned.tensors, pruned.metadata, { dtype: args.dtype ?? (allHalf ? 'F16' : 'F32') });
    await writeFileAtomic(args.out, bytes, { force: args.force });
    if (args.report) await writeFileAtomic(args.report, new TextEncoder().encode(JSON.stringify(report, null, 1) + '\n'), { force: args.force });
    console.log(formatReport(report));
    console.log(`\nwrote ${args.out} (${(bytes.length / 2 ** 20).toFixed(2)} MiB)${args.report ? ` and ${args.report}` : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    ctx.device.destroy();
  }
}
