// Calibration after pruning (prune/calibration*.ts) and its kernels: per-channel statistics
// (channel_stats), train-mode batch norm (batch_norm_apply) and the normal equations of a
// least-squares conv refit (normal_equations) against their float64 references on seeded,
// awkward shapes (1 channel, 37 channels, a 1x1 plane, planes that are not a multiple of the
// workgroup, batches, stride 2 on odd sizes, padding, values far from zero, constant channels,
// shared output buffers, accumulation over several dispatches, every register tile).

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as assert from 'uvu/assert';
import { parsePruneArgs, pruneCommand } from '../bin/prune.ts';
import { encodePng, type RgbImage } from '../io/image.ts';
import { listCalibrationImages } from '../io/calibrationImages.ts';
import { parseSafetensors, serializeSafetensors } from '../weights-loader/safetensors.ts';
import type { GpuContext } from '../engine/gpu.ts';
import { BatchNormApply } from '../engine/kernels/batchNormApply.ts';
import { recordChannelStats } from '../engine/kernels/channelStats.ts';
import { normalEquationsSize, recordNormalEquations, type NormalEquationsSpec } from '../engine/kernels/normalEquations.ts';
import { Recorder } from '../engine/recorder.ts';
import { gpuSuite } from './harness.ts';
import { normal, uniform } from './random.ts';
import { batchNormTrainRef } from './reference/batch_norm_apply.ts';
import { channelStatsRef } from './reference/channel_stats.ts';
import { normalEquationsRef } from './reference/normal_equations.ts';
import { preciseBnRef } from './reference/precise_bn.ts';
import { preprocessRef } from './reference/preprocess.ts';
import { syntheticMaskRCNNFile } from './synthetic-model.ts';
import { assertClose, compare, f32Accum, type Tolerance } from './tolerance.ts';
import { normalizationTable, recordPreprocess, resizePlan } from '../engine/kernels/preprocess.ts';
import { ResNetFpn } from '../engine/maskrcnn/backbone.ts';
import { convFromParams } from '../engine/maskrcnn/layers.ts';
import { ConvTranspose2d } from '../engine/kernels/convTranspose2d.ts';
import { Linear } from '../engine/kernels/linear.ts';
import { RoiAlignMultiLevel } from '../engine/kernels/roiAlign.ts';
import type { Tensor as GpuTensor } from '../engine/planner.ts';
import type { SafetensorsFile } from '../weights-loader/safetensors.ts';
import { prune, CalibrationError, type CalibrationImage, type PruneOptions } from '../prune/index.ts';
import { bodyBnLayers, zeroFilters } from '../prune/bnStatistics.ts';
import { solveRidge } from '../prune/ridge.ts';
import { conv2dRef } from './reference/conv2d.ts';
import { maxPool2dRef } from './reference/pooling.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';
import { BN_SUFFIXES, canonicalizeKeys, foldFrozenBatchNorm, loadMaskRCNNWeights, maskrcnnParseOptions, parseMaskRCNNMeta } from '../weights-loader/maskrcnn.ts';

/**
 * f32 Welford + pairwise merge against two-pass float64: the mean to a few ulps, the variance to
 * ~1e-4 relative of the second moment about the mean (values of mean 1000 and std 0.5: the f32
 * inputs themselves are exact, only the running sums round).
 */
const statsTol: Tolerance = { name: 'channelStats', abs: 1e-5, rel: 2e-4 };

interface StatsCase {
  name: string;
  batch: number;
  channels: number;
  h: number;
  w: number;
  mean?: number;
  std?: number;
}

const statsCases: StatsCase[] = [
  { name: '1 channel, 1x1 plane (variance 0)', batch: 1, channels: 1, h: 1, w: 1 },
  { name: '37 channels, odd 13x11', batch: 1, channels: 37, h: 13, w: 11 },
  { name: 'batch 3, 5 channels, 7x9', batch: 3, channels: 5, h: 7, w: 9 },
  { name: '3 channels, 17x31 (527 values: two strides of 256 and a tail)', batch: 1, channels: 3, h: 17, w: 31 },
  { name: 'mean 1000, std 0.5 (no cancellation), 4 channels, 40x41', batch: 1, channels: 4, h: 40, w: 41, mean: 1000, std: 0.5 },
  { name: 'batch 2 of 1x1 planes, 6 channels', batch: 2, channels: 6, h: 1, w: 1 },
];

async function gpuStats(ctx: GpuContext, x: Float32Array, c: StatsCase): Promise<Float32Array> {
  const rec = new Recorder(ctx, 'channel-stats-test');
  try {
    const input = rec.input('x', x, c.batch === 1 ? [c.channels, c.h, c.w] : [c.batch, c.channels, c.h, c.w]);
    const out = recordChannelStats(rec, input);
    rec.submit();
    return await ctx.readF32(out.buffer, 2 * c.channels);
  } finally {
    rec.destroy();
  }
}

function statsInput(c: StatsCase, seed: number): Float32Array {
  const n = c.batch * c.channels * c.h * c.w;
  const x = normal(seed, n, c.std ?? 1);
  const shift = uniform(seed + 1, c.channels, -2, 2);
  for (let i = 0; i < n; i++) x[i] += (c.mean ?? 0) + shift[Math.floor(i / (c.h * c.w)) % c.channels];
  return x;
}

const stats = gpuSuite('channel_stats');
statsCases.forEach((c, i) =>
  stats.test(c.name, async (ctx) => {
    const x = statsInput(c, 300 + 11 * i);
    const got = await gpuStats(ctx, x, c);
    assertClose(got, channelStatsRef(x, c.batch, c.channels, c.h * c.w), statsTol, c.name);
  }),
);
stats.test('a constant channel has variance exactly 0 and its value as mean', async (ctx) => {
  const c = { name: 'constant', batch: 1, channels: 2, h: 19, w: 23 };
  const x = new Float32Array(2 * 19 * 23).fill(0.3);
  x.fill(-1.7, 19 * 23);
  const got = await gpuStats(ctx, x, c);
  assert.equal([...got], [Math.fround(0.3), 0, Math.fround(-1.7), 0]);
});
stats.test('two tensors into one buffer at channel offsets', async (ctx) => {
  const a = statsInput({ name: 'a', batch: 1, channels: 3, h: 5, w: 7 }, 71);
  const b = statsInput({ name: 'b', batch: 1, channels: 4, h: 9, w: 2 }, 72);
  const rec = new Recorder(ctx, 'channel-stats-offsets');
  try {
    const out = rec.input('stats', new Float32Array(2 * 9).fill(-99), [9, 2]);
    recordChannelStats(rec, rec.input('a', a, [3, 5, 7]), { output: out, offset: 0 });
    recordChannelStats(rec, rec.input('b', b, [4, 9, 2]), { output: out, offset: 5 });
    rec.submit();
    const got = await ctx.readF32(out.buffer, 18);
    assertClose(got.subarray(0, 6), channelStatsRef(a, 1, 3, 35), statsTol, 'a at offset 0');
    assert.equal([...got.subarray(6, 10)], [-99, -99, -99, -99], 'channels 3 and 4 untouched');
    assertClose(got.subarray(10, 18), channelStatsRef(b, 1, 4, 18), statsTol, 'b at offset 5');
  } finally {
    rec.destroy();
  }
});

/**
 * compact vs mask, each calibrated: uncalibrated they agree to 6e-6 (tests/prune.test.ts), but each
 * calibration's statistics carry their own float32 noise (bodyStats: up to ~1e-4, renormalising
 * over 12-value maps in layer4), which the FPN maps inherit: measured worst 2.3e-4 at |x| ~ 1. A
 * constant lost or doubled by the zero-filter rule would be off by O(0.1).
 */
const calibratedSameNetwork: Tolerance = { name: 'calibratedSameNetwork', abs: 1e-3, rel: 1e-3 };

/** Records preprocess, body and FPN of `image` (as inference resizes it) and returns the FPN levels. */
function recordFpnLevels(rec: Recorder, net: ResNetFpn, weights: ReturnType<typeof loadMaskRCNNWeights>, image: CalibrationImage): GpuTensor[] {
  const plan = resizePlan(image.height, image.width, weights.meta.minSize, weights.meta.maxSize);
  const table = rec.input('table', normalizationTable(weights.meta.imageMean, weights.meta.imageStd), [256, 3]);
  const { image: input, output } = recordPreprocess(rec, plan, table);
  input.write(image.data, 3);
  return net.recordFpn(rec, net.recordBody(rec, output));
}

/** The FPN maps (P2..P5, pool) of `file` on one image, through the engine's own backbone. */
async function fpnMaps(ctx: GpuContext, file: SafetensorsFile, image: CalibrationImage): Promise<Float32Array[]> {
  const weights = loadMaskRCNNWeights(file);
  const net = new ResNetFpn(ctx, weights);
  const rec = new Recorder(ctx, 'fpn maps');
  try {
    const levels = recordFpnLevels(rec, net, weights, image);
    rec.submit();
    return await Promise.all(levels.map((l) => ctx.readF32(l.buffer, l.shape.reduce((a, b) => a * b, 1))));
  } finally {
    rec.destroy();
    net.destroy();
  }
}

/**
 * Refitted weights against a float64 solve of float64 normal equations: the GPU's float32 sums
 * (f32Accum) through a ridge-regularised solve, and a BN fold and unfold in float32.
 */
const lsqWeights: Tolerance = { name: 'lsqWeights', abs: 1e-4, rel: 1e-3 };

/**
 * The dense output channels a pruned conv kept, matched by their BN weight (seeded uniform
 * values, distinct per channel); a carrier channel (BN weight set to 0, never refitted) maps to 0.
 */
function keptRows(pruned: Map<string, Tensor>, dense: Map<string, Tensor>, conv: string, fp: { shape: number[] }, fd: { shape: number[] }): number[] {
  const bn = conv.endsWith('conv1') ? conv.replace('conv1', 'bn1') : conv.replace('downsample.0', 'downsample.1');
  const gp = pruned.get(`${bn}.weight`)!.data;
  const gd = dense.get(`${bn}.weight`)!.data;
  const rows = Array.from(gp, (v) => (v === 0 ? 0 : gd.indexOf(v)));
  if (rows.some((r) => r < 0) || rows.length !== fp.shape[0] || fd.shape[0] < rows.length) throw new Error(`cannot match ${conv}'s kept rows`);
  return rows;
}

/** Normalised values O(1): the f32 statistics' rounding, times 1/std. */
const bnTol: Tolerance = { name: 'batchNormTrain', abs: 2e-5, rel: 2e-4 };

const bn = gpuSuite('batch_norm_apply');
for (const [i, c] of [
  { name: '37 channels, odd 13x11, ReLU', batch: 1, channels: 37, h: 13, w: 11, relu: true, residual: false, eps: 1e-5 },
  { name: 'batch 3, 5 channels, 7x9, residual + ReLU, eps 0', batch: 3, channels: 5, h: 7, w: 9, relu: true, residual: true, eps: 0 },
  { name: '1 channel, 1x1 plane, eps 0 (constant: outputs beta)', batch: 1, channels: 1, h: 1, w: 1, relu: false, residual: false, eps: 0 },
  { name: '6 channels, 17x31, gamma 0 in channel 2, residual', batch: 1, channels: 6, h: 17, w: 31, relu: false, residual: true, eps: 1e-5 },
].entries()) {
  bn.test(c.name, async (ctx) => {
    const n = c.batch * c.channels * c.h * c.w;
    const x = statsInput(c, 500 + 13 * i);
    const gamma = uniform(501 + i, c.channels, 0.2, 2);
    if (c.channels > 2) gamma[2] = 0;
    const beta = uniform(502 + i, c.channels, -1, 1);
    const residual = c.residual ? normal(503 + i, n) : undefined;
    const layer = new BatchNormApply(ctx, { channels: c.channels, eps: c.eps, relu: c.relu, residual: c.residual }, gamma, beta, 'bn-test');
    const rec = new Recorder(ctx, 'bn-test');
    try {
      const shape = c.batch === 1 ? [c.channels, c.h, c.w] : [c.batch, c.channels, c.h, c.w];
      const input = rec.input('x', x, shape);
      // Stats of another layer first: the batch norm reads its own channels at offset 3.
      const s = rec.input('stats', new Float32Array(2 * (3 + c.channels)), [3 + c.channels, 2]);
      recordChannelStats(rec, input, { output: s, offset: 3 });
      const y = layer.record(rec, input, s, { offset: 3, residual: residual ? rec.input('res', residual, shape) : undefined });
      rec.submit();
      const got = await ctx.readF32(y.buffer, n);
      assertClose(got, batchNormTrainRef(x, { batch: c.batch, channels: c.channels, plane: c.h * c.w }, gamma, beta, c.eps, { residual, relu: c.relu }), bnTol, c.name);
    } finally {
      rec.destroy();
      layer.destroy();
    }
  });
}

interface NeCase {
  name: string;
  batch: number;
  cin: number;
  h: number;
  w: number;
  k: [number, number];
  stride?: [number, number];
  padding?: [number, number];
  targets: number;
  base?: boolean;
}

const neCases: NeCase[] = [
  { name: '3x3 s1 p1, 5 ch, odd 9x7, 3 targets', batch: 1, cin: 5, h: 9, w: 7, k: [3, 3], padding: [1, 1], targets: 3 },
  { name: '3x3 s2 p1 on odd 11x9, 4 ch, 6 targets minus a base (residual branch)', batch: 1, cin: 4, h: 11, w: 9, k: [3, 3], stride: [2, 2], padding: [1, 1], targets: 6, base: true },
  { name: '1x1, 37 ch, batch 3 of 6x5, 2 targets', batch: 3, cin: 37, h: 6, w: 5, k: [1, 1], targets: 2 },
  { name: 'Linear as 1x1 on 1x1 planes: batch 13, 20 in, 7 out', batch: 13, cin: 20, h: 1, w: 1, k: [1, 1], targets: 7 },
  { name: '1 input channel, 2x5 kernel, stride 2x1, padding 0x2, 1 target', batch: 1, cin: 1, h: 8, w: 6, k: [2, 5], stride: [2, 1], padding: [0, 2], targets: 1 },
];

/** The entries the kernel writes: the X^T X upper triangle and the X^T T block. */
function upperPart(g: ArrayLike<number>, features: number, columns: number): Float64Array {
  const out: number[] = [];
  for (let i = 0; i < features; i++) for (let j = i; j < columns; j++) out.push(g[i * columns + j]);
  return Float64Array.from(out);
}

async function runNeCase(ctx: GpuContext, c: NeCase, seed: number, tile?: NormalEquationsSpec['tile'], repeats = 1, maxChunkFloats?: number, sample?: { step: number; offset: number }): Promise<void> {
  const spec: NormalEquationsSpec = { cin: c.cin, kernel: c.k, stride: c.stride, padding: c.padding, targets: c.targets, tile, maxChunkFloats };
  const { features, columns } = normalEquationsSize(spec);
  const x = normal(seed, c.batch * c.cin * c.h * c.w);
  const refArgs = { batch: c.batch, cin: c.cin, h: c.h, w: c.w, kh: c.k[0], kw: c.k[1], stride: c.stride, padding: c.padding, targets: c.targets };
  const { oh, ow } = normalEquationsRef({ ...refArgs, batch: 0 }, [], []);
  const t = normal(seed + 1, c.batch * c.targets * oh * ow);
  const base = c.base ? normal(seed + 2, t.length, 0.5) : undefined;
  const rec = new Recorder(ctx, 'normal-equations-test');
  try {
    const shape = (ch: number, h: number, w: number) => (c.batch === 1 ? [ch, h, w] : [c.batch, ch, h, w]);
    const gram = rec.input('gram', new Float32Array(features * columns), [features, columns]);
    const io = { input: rec.input('x', x, shape(c.cin, c.h, c.w)), target: rec.input('t', t, shape(c.targets, oh, ow)), base: base ? rec.input('base', base, shape(c.targets, oh, ow)) : undefined, gram };
    for (let r = 0; r < repeats; r++) recordNormalEquations(rec, spec, io, 'normal_equations', sample);
    rec.submit();
    const got = await ctx.readF32(gram.buffer, features * columns);
    const want = normalEquationsRef(refArgs, x, t, base, sample).gram.map((v) => v * repeats);
    const what = `${c.name}${tile ? `, tile ${tile.tm}x${tile.tn} wg ${tile.wgX}x${tile.wgY}` : ''}${repeats > 1 ? `, ${repeats} records` : ''}${maxChunkFloats ? `, chunks of ${maxChunkFloats} floats` : ''}${sample ? `, every ${sample.step}th position from ${sample.offset}` : ''}`;
    assertClose(upperPart(got, features, columns), upperPart(want, features, columns), f32Accum, what);
  } finally {
    rec.destroy();
  }
}

const ne = gpuSuite('normal_equations');
neCases.forEach((c, i) => ne.test(c.name, (ctx) => runNeCase(ctx, c, 700 + 17 * i)));
ne.test('every register tile gives the same sums; records accumulate; positions split in chunks', async (ctx) => {
  for (const tile of [
    { tm: 1, tn: 1, wgX: 8, wgY: 8 },
    { tm: 8, tn: 4, wgX: 4, wgY: 4 },
    { tm: 2, tn: 8, wgX: 16, wgY: 2 },
  ]) {
    await runNeCase(ctx, neCases[1], 801, tile);
  }
  await runNeCase(ctx, neCases[0], 802, undefined, 3);
  // 63 positions x 49 columns in chunks of 4 * 49 * 3 floats: 12 positions a chunk, the last 3.
  await runNeCase(ctx, neCases[0], 803, undefined, 1, 4 * 49 * 3);
  await runNeCase(ctx, neCases[2], 804, { tm: 4, tn: 4, wgX: 8, wgY: 8 }, 2, 41 * 8 + 5);
  // Subsampled positions: a step longer than a row (7 > OW 5) and across the batch, with chunks.
  await runNeCase(ctx, neCases[2], 805, undefined, 1, undefined, { step: 7, offset: 3 });
  await runNeCase(ctx, neCases[0], 806, undefined, 1, 4 * 49 * 2, { step: 4, offset: 0 });
  await runNeCase(ctx, neCases[3], 807, undefined, 1, undefined, { step: 5, offset: 4 });
});

// A narrow synthetic model (widths / 16) at a tiny input size, so that float64 references of the
// whole body run in a moment.
const tinyMeta = { min_size: '96', max_size: '160' };
const tiny = syntheticMaskRCNNFile({ widthDiv: 16, seed: 5 }, tinyMeta);

function randomImage(seed: number, width: number, height: number, name?: string): CalibrationImage {
  const r = uniform(seed, width * height * 3, 0, 256);
  return { width, height, data: Uint8Array.from(r, Math.floor), name };
}

/**
 * The whole train-mode body through ~53 f32 layers, each renormalised with statistics over as few
 * as 12 values (layer4 at this size), against float64: measured worst 9 % of this tolerance.
 */
const bodyStats: Tolerance = { name: 'preciseBn', abs: 2e-4, rel: 1e-3 };

const calib = gpuSuite('calibration: BatchNorm statistics (stats mode)');
calib.test('re-estimated statistics = float64 precise BN (train mode, per-image batches) on 2 images of different sizes; nothing else changes', async (ctx) => {
  const images = [randomImage(11, 37, 29, 'a'), randomImage(12, 20, 45, 'b')];
  const options: PruneOptions = { ratio: 0.3, scope: 'layer' };
  const plain = await prune(ctx, tiny, options);
  const { file, report } = await prune(ctx, tiny, { ...options, calibration: { images, mode: 'stats' } });
  assert.ok(report.calibration && report.calibration.images === 2 && report.calibration.stats!.layers === 53, 'report');
  assert.ok(JSON.parse(file.metadata.calibration).mode === 'stats', 'metadata records the calibration');
  const pruned = canonicalizeKeys(plain.file.tensors);
  const meta = parseMaskRCNNMeta(tiny.metadata, 5);
  const inputs = images.map((im) => {
    const plan = resizePlan(im.height, im.width, meta.minSize, meta.maxSize);
    return { data: preprocessRef(im.data as Uint8Array, plan, meta.imageMean, meta.imageStd), c: 3, h: plan.paddedH, w: plan.paddedW };
  });
  const want = preciseBnRef(pruned, inputs, meta.eps);
  const got = canonicalizeKeys(file.tensors);
  let changed = 0;
  let worst = { fraction: 0, report: '' };
  for (const l of bodyBnLayers()) {
    const w = want.get(l.bn)!;
    for (const [key, ref] of [[`${l.bn}.running_mean`, w.mean], [`${l.bn}.running_var`, w.variance]] as const) {
      const c = compare(got.get(key)!.data, ref, bodyStats, key);
      if (!c.ok) throw new Error(c.report);
      if (c.worstFraction >= worst.fraction) worst = { fraction: c.worstFraction, report: c.report };
    }
    if (got.get(`${l.bn}.running_var`)!.data.some((v, c) => v !== pruned.get(`${l.bn}.running_var`)!.data[c])) changed++;
  }
  console.log(`    53 BatchNorms, running_mean and running_var all within; worst: ${worst.report}`);
  assert.is(changed, 53, 'every body BatchNorm was re-estimated');
  const statsKeys = new Set(bodyBnLayers().flatMap((l) => [`${l.bn}.running_mean`, `${l.bn}.running_var`]));
  for (const [k, t] of plain.file.tensors) {
    const c = file.tensors.get(k)!;
    assert.equal(c.shape, t.shape, `${k} keeps its shape`);
    if (!statsKeys.has(k)) assert.ok(c.data.every((v, i) => v === t.data[i]), `${k} is unchanged`);
  }
  assert.equal(new Set(file.tensors.keys()), new Set(plain.file.tensors.keys()), 'same keys');
  loadMaskRCNNWeights(file);
});

calib.test('compact and mask calibrate to the same network (zero filters keep their constants): same FPN maps', async (ctx) => {
  const images = [randomImage(21, 30, 30), randomImage(22, 41, 23)];
  const files = await Promise.all(
    (['compact', 'mask'] as const).map(async (mode) => (await prune(ctx, tiny, { ratio: 0.4, scope: 'layer', mode, calibration: { images, mode: 'stats' } })).file),
  );
  const maps = await Promise.all(files.map((f) => fpnMaps(ctx, f, randomImage(23, 33, 27))));
  maps[0].forEach((m, i) => assertClose(m, maps[1][i], calibratedSameNetwork, `FPN level ${i}, compact vs mask (calibrated)`));
});

calib.test('bad input is refused with an error that says why (and prune returns nothing)', async (ctx) => {
  const ok = [randomImage(31, 16, 16, 'ok.png')];
  const fails = async (calibration: Parameters<typeof prune>[2]['calibration'], pattern: RegExp, weights = tiny) => {
    let error: unknown;
    await prune(ctx, weights, { ratio: 0.2, calibration }).catch((e) => (error = e));
    assert.ok(error instanceof CalibrationError, `a CalibrationError for ${pattern} (got ${error})`);
    assert.match((error as Error).message, pattern);
  };
  await fails({ images: [] }, /at least one image/);
  await fails({ images: ok, count: 2 }, /asks for 2 images but only 1 were given/);
  await fails({ images: ok, mode: 'fast' as never }, /mode is 'fast'/);
  await fails({ images: [...ok, { width: 4, height: 4, data: new Uint8Array(47), name: 'short.png' }] }, /'short.png'.*47 bytes.*needs 48/);
  await fails({ images: [randomImage(32, 2000, 1, 'strip.png')] }, /'strip.png'.*aspect ratio is too extreme/);
  // Weights whose activations overflow float32: the statistics are not finite.
  const huge = syntheticMaskRCNNFile({ widthDiv: 16, seed: 5 }, tinyMeta);
  const w = huge.tensors.get('backbone.body.conv1.weight')!;
  huge.tensors.set('backbone.body.conv1.weight', { ...w, data: w.data.map(() => 1e30) });
  await fails({ images: ok }, /non-finite.*nothing was written/, huge);
});

calib.test('maskgpu prune --calibrate DIR: reads the folder\'s PNG/JPEG images by name; bad folders and images write nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'maskgpu-calibrate-'));
  const log = console.log;
  try {
    const input = join(dir, 'in.safetensors');
    await writeFile(input, serializeSafetensors(tiny.tensors, tiny.metadata));
    const images = join(dir, 'images');
    await mkdir(images);
    await writeFile(join(images, 'b.png'), await encodePng(randomImage(41, 23, 17) as RgbImage));
    await writeFile(join(images, 'a.png'), await encodePng(randomImage(42, 15, 30) as RgbImage));
    await writeFile(join(images, 'notes.txt'), 'not an image');
    assert.equal((await listCalibrationImages(images)).map((f) => basename(f)), ['a.png', 'b.png'], 'images only, sorted by name');
    const out = join(dir, 'out.safetensors');
    const args = ['--weights', input, '--ratio', '0.3', '--scope', 'layer', '--out', out, '--calibrate', images];
    console.log = () => undefined;
    assert.is(await pruneCommand([...args, '--calibration-images', '2']), 0);
    console.log = log;
    const file = parseSafetensors(new Uint8Array(await readFile(out)), maskrcnnParseOptions);
    loadMaskRCNNWeights(file);
    const recorded = JSON.parse(file.metadata.calibration);
    assert.is(recorded.images, 2);
    assert.is(recorded.mode, 'stats+lsq', 'the default for compact filter pruning');

    const rejects = async (argv: string[], pattern: RegExp) => {
      let message = '';
      await pruneCommand(argv).catch((e: Error) => (message = e.message));
      assert.match(message, pattern);
      assert.not.ok(existsSync(join(dir, 'never.safetensors')), `nothing written for ${pattern}`);
    };
    const never = ['--weights', input, '--ratio', '0.3', '--out', join(dir, 'never.safetensors')];
    await rejects([...never, '--calibrate', join(dir, 'missing')], /missing: no such folder/);
    await rejects([...never, '--calibrate', input], /is a file: give a folder/);
    const empty = join(dir, 'empty');
    await mkdir(empty);
    await writeFile(join(empty, 'readme.md'), '#');
    await rejects([...never, '--calibrate', empty], /holds no PNG or JPEG images/);
    await rejects([...never, '--calibrate', images, '--calibration-images', '3'], /3 calibration images asked for, but .* holds only 2/);
    const broken = join(dir, 'broken');
    await mkdir(broken);
    await writeFile(join(broken, 'x.png'), await encodePng(randomImage(43, 9, 9) as RgbImage));
    await writeFile(join(broken, 'y.jpg'), new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
    await rejects([...never, '--calibrate', broken], /calibration image unreadable: .*y\.jpg/);
    assert.throws(() => parsePruneArgs([...never, '--calibration-images', '5']), /need --calibrate DIR/);
    assert.throws(() => parsePruneArgs([...never, '--calibrate', images, '--calibration-mode', 'all']), /--calibration-mode is 'all'/);
    assert.throws(() => parsePruneArgs([...never, '--calibrate', images, '--calibration-images', '0']), /--calibration-images is 0/);
  } finally {
    console.log = log;
    await rm(dir, { recursive: true, force: true });
  }
});

const lsq = gpuSuite('calibration: least-squares reconstruction (lsq mode)');
lsq.test('ridge solver: recovers exact weights and intercepts; a zero feature gets weight 0', () => {
  const a = { batch: 2, cin: 3, h: 6, w: 5, kh: 3, kw: 3, padding: [1, 1] as [number, number], targets: 2 };
  const x = normal(900, a.batch * a.cin * a.h * a.w);
  x.fill(0, 6 * 5, 2 * 6 * 5); // input channel 1 of image 0 is all zero...
  x.fill(0, (3 + 1) * 6 * 5, (3 + 2) * 6 * 5); // ...and of image 1: its 9 features never fire
  const k = a.cin * 9;
  const w = normal(901, a.targets * k);
  const b = [0.3, -1.2];
  // t = X w + b, through the conv reference.
  const t = conv2dRef({ batch: a.batch, cin: a.cin, h: a.h, w: a.w, cout: a.targets, kh: 3, kw: 3, padding: [1, 1] }, x, w, b).data;
  const ref = normalEquationsRef(a, x, t);
  const sol = solveRidge(ref.gram, ref.features, a.targets, 1e-9);
  for (let m = 0; m < a.targets; m++)
    for (let f = 0; f < k; f++) {
      const want = f >= 9 && f < 18 ? 0 : w[m * k + f];
      assert.ok(Math.abs(sol.weights[m * ref.features + f] - want) < 1e-6, `w[${m}][${f}] = ${sol.weights[m * ref.features + f]}, want ${want}`);
    }
  b.forEach((v, m) => assert.ok(Math.abs(sol.weights[m * ref.features + k] - v) < 1e-6, `intercept ${m}`));
});

lsq.test('the first refits (layer1.0 conv1, downsample) = float64 ridge least squares on the reference stem outputs', async (ctx) => {
  const images = [randomImage(51, 37, 29), randomImage(52, 20, 45)];
  const options: PruneOptions = { ratio: 0.3, scope: 'layer' };
  const plain = await prune(ctx, tiny, options);
  const { file, report } = await prune(ctx, tiny, { ...options, calibration: { images, mode: 'lsq' } });
  const fits = report.calibration!.leastSquares!;
  assert.is(fits.images, 2);
  assert.ok(fits.layers.length >= 33, `every conv2/conv3 and layer1.0's conv1/downsample refitted (${fits.layers.length})`);
  const pruned = canonicalizeKeys(plain.file.tensors);
  const dense = canonicalizeKeys(tiny.tensors);
  const meta = parseMaskRCNNMeta(tiny.metadata, 5);
  const folded = (t: Map<string, Tensor>, conv: string, bn: string) => {
    const w = t.get(`${conv}.weight`)!;
    const [weight, bias, running_mean, running_var] = BN_SUFFIXES.map((x) => t.get(`${bn}.${x}`)!.data);
    return { ...foldFrozenBatchNorm(w.data, w.shape[0], { weight, bias, running_mean, running_var }, meta.eps), shape: w.shape };
  };
  const stem = (t: Map<string, Tensor>, x: Float32Array, h: number, w: number) => {
    const f = folded(t, 'backbone.body.conv1', 'backbone.body.bn1');
    const y = conv2dRef({ batch: 1, cin: 3, h, w, cout: f.shape[0], kh: 7, kw: 7, stride: [2, 2], padding: [3, 3], relu: true }, x, f.weight, f.bias);
    return { ...maxPool2dRef({ planes: f.shape[0], h: y.oh, w: y.ow, kernel: 3, stride: 2, padding: 1 }, y.data), c: f.shape[0] };
  };
  const got = canonicalizeKeys(file.tensors);
  for (const [conv, bn] of [['backbone.body.layer1.0.conv1', 'backbone.body.layer1.0.bn1'], ['backbone.body.layer1.0.downsample.0', 'backbone.body.layer1.0.downsample.1']]) {
    const fp = folded(pruned, conv, bn);
    const fd = folded(dense, conv, bn);
    const [cout, cin] = fp.shape;
    let gram: Float64Array | undefined;
    let features = 0;
    for (const im of images) {
      const plan = resizePlan(im.height, im.width, meta.minSize, meta.maxSize);
      const x = preprocessRef(im.data as Uint8Array, plan, meta.imageMean, meta.imageStd);
      const xd = stem(dense, x, plan.paddedH, plan.paddedW);
      const xp = stem(pruned, x, plan.paddedH, plan.paddedW);
      // The dense conv's output on the dense input, on the rows the pruned layer kept.
      const rows = keptRows(pruned, dense, conv, fp, fd);
      const target = conv2dRef({ batch: 1, cin: xd.c, h: xd.oh, w: xd.ow, cout: rows.length, kh: 1, kw: 1 }, xd.data, rows.flatMap((o) => [...fd.weight.subarray(o * xd.c, (o + 1) * xd.c)]), rows.map((o) => fd.bias[o]));
      const ne = normalEquationsRef({ batch: 1, cin, h: xp.oh, w: xp.ow, kh: 1, kw: 1, targets: cout }, xp.data, target.data);
      features = ne.features;
      gram = gram ? gram.map((v, i) => v + ne.gram[i]) : ne.gram;
    }
    const want = solveRidge(gram!, features, cout, 1e-3).weights;
    const out = folded(got, conv, bn);
    const fixed = zeroFilters(pruned.get(`${conv}.weight`)!.data, cout);
    const gotW: number[] = [];
    const wantW: number[] = [];
    for (let o = 0; o < cout; o++) {
      if (fixed[o]) continue;
      for (let i = 0; i < cin; i++) {
        gotW.push(out.weight[o * cin + i]);
        wantW.push(want[o * features + i]);
      }
      gotW.push(out.bias[o]);
      wantW.push(want[o * features + cin]);
    }
    assertClose(gotW, wantW, lsqWeights, `${conv}: refitted (folded) weights and bias`);
  }
});

lsq.test('refitted networks are closer to the unpruned one than the pruned network is (FPN maps on a held-out image); mask mode is refused', async (ctx) => {
  const images = [randomImage(61, 37, 29), randomImage(62, 20, 45), randomImage(63, 30, 30)];
  const heldOut = randomImage(64, 33, 27);
  const options: PruneOptions = { ratio: 0.4, scope: 'layer' };
  const dense = await fpnMaps(ctx, tiny, heldOut);
  const error = async (file: SafetensorsFile) => {
    const maps = await fpnMaps(ctx, file, heldOut);
    let num = 0;
    let den = 0;
    maps.forEach((m, l) => m.forEach((v, i) => ((num += (v - dense[l][i]) ** 2), (den += dense[l][i] ** 2))));
    return Math.sqrt(num / den);
  };
  const plain = await error((await prune(ctx, tiny, options)).file);
  const stats = await error((await prune(ctx, tiny, { ...options, calibration: { images, mode: 'stats' } })).file);
  const refit = await error((await prune(ctx, tiny, { ...options, calibration: { images, mode: 'lsq' } })).file);
  const both = await error((await prune(ctx, tiny, { ...options, calibration: { images, mode: 'stats+lsq' } })).file);
  console.log(`    relative error of the FPN maps against the unpruned model: pruned ${plain.toFixed(3)}, stats ${stats.toFixed(3)}, lsq ${refit.toFixed(3)}, stats+lsq ${both.toFixed(3)}`);
  assert.ok(refit < 0.5 * plain && both < 0.5 * plain, 'least squares at least halves the error');
  let message = '';
  await prune(ctx, tiny, { ...options, mode: 'mask', calibration: { images, mode: 'lsq' } }).catch((e: Error) => (message = e.message));
  assert.match(message, /needs compact mode and filter granularity; use mode 'stats'/);
});

/** RPN outputs on every level and box/mask predictor outputs at fixed boxes, through the engine's own layers. */
async function headOutputs(ctx: GpuContext, file: SafetensorsFile, image: CalibrationImage, rois: Float32Array): Promise<{ rpn: Float32Array; box: Float32Array; mask: Float32Array }> {
  const w = loadMaskRCNNWeights(file);
  const net = new ResNetFpn(ctx, w);
  const layers = [
    convFromParams(ctx, w.rpn.conv, 'rpn conv', { relu: true }),
    convFromParams(ctx, w.rpn.cls, 'rpn cls'),
    convFromParams(ctx, w.rpn.bbox, 'rpn bbox'),
    ...w.maskHead.map((p, i) => convFromParams(ctx, p, `mask ${i}`, { relu: true })),
    convFromParams(ctx, w.maskPredictor.logits, 'mask logits'),
  ];
  const lin = (p: typeof w.boxHead.fc6, relu: boolean) => new Linear(ctx, p.inFeatures, p.outFeatures, p.weight, p.bias, relu);
  const box = [lin(w.boxHead.fc6, true), lin(w.boxHead.fc7, true), lin(w.boxPredictor.cls, false), lin(w.boxPredictor.bbox, false)];
  const d = w.maskPredictor.deconv;
  const deconv = new ConvTranspose2d(ctx, { cin: d.cin, cout: d.cout, scale: 2, relu: true }, d.weight, d.bias);
  const rec = new Recorder(ctx, 'head outputs');
  try {
    const levels = recordFpnLevels(rec, net, w, image);
    const outs: GpuTensor[] = [];
    for (const l of levels) {
      const h = layers[0].record(rec, l);
      outs.push(layers[1].record(rec, h), layers[2].record(rec, h));
    }
    const n = rois.length / 4;
    const at = (size: number) =>
      new RoiAlignMultiLevel(ctx, { channels: w.fpn.layer[0].cout, outputSize: size, maxRois: n }).record(rec, { features: levels.slice(0, 4), boxes: rec.input('rois', rois, [n, 4]), count: rec.input('n', new Uint32Array([n])), imageHeight: resizePlan(image.height, image.width, w.meta.minSize, w.meta.maxSize).outH });
    let x = at(7);
    x = { ...x, shape: [n, x.shape[1] * 49] };
    const x6 = box[0].record(rec, x);
    const x7 = box[1].record(rec, x6);
    const boxOuts = [box[2].record(rec, x7), box[3].record(rec, x7)];
    let m = at(14);
    for (const c of layers.slice(3, 7)) m = c.record(rec, m);
    const maskOut = layers[7].record(rec, deconv.record(rec, m));
    rec.submit();
    const read = async (ts: GpuTensor[]) => {
      const parts = await Promise.all(ts.map((t) => ctx.readF32(t.buffer, t.shape.reduce((a, b) => a * b, 1))));
      const outArr = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      parts.reduce((o, p) => (outArr.set(p, o), o + p.length), 0);
      return outArr;
    };
    return { rpn: await read(outs), box: await read(boxOuts), mask: await read([maskOut]) };
  } finally {
    rec.destroy();
    net.destroy();
    for (const l of [...layers, ...box, deconv]) l.destroy();
  }
}

lsq.test('heads refitted too: RPN, box and mask predictor outputs closer to the unpruned model\'s (held-out image, fixed boxes)', async (ctx) => {
  const images = [randomImage(71, 37, 29), randomImage(72, 20, 45), randomImage(73, 30, 30), randomImage(74, 44, 26)];
  const heldOut = randomImage(75, 33, 27);
  const rois = Float32Array.from([4, 6, 40, 50, 30, 10, 90, 60, 0, 0, 120, 96, 50, 40, 70, 80]);
  const options: PruneOptions = { ratio: 0.4, scope: 'layer' };
  // Random weights detect nothing (their RPN deltas make degenerate proposals): zero box deltas
  // (proposals = anchors, detections = proposals) and a class-1 bias make the unpruned model
  // detect, so that the mask head has RoIs to be fitted on.
  const model = syntheticMaskRCNNFile({ widthDiv: 16, seed: 5 }, tinyMeta);
  const set = (key: string, f: (v: number, i: number) => number) => {
    const t = model.tensors.get(key)!;
    model.tensors.set(key, { ...t, data: Float32Array.from(t.data, f) });
  };
  set('roi_heads.box_predictor.cls_score.bias', (v, i) => (i === 1 ? 4 : v));
  for (const k of ['rpn.head.bbox_pred', 'roi_heads.box_predictor.bbox_pred']) for (const s of ['weight', 'bias']) set(`${k}.${s}`, () => 0);
  const dense = await headOutputs(ctx, model, heldOut, rois);
  const rel = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0) / b.reduce((s, v) => s + v * v, 0));
  const errors = async (file: SafetensorsFile) => {
    const o = await headOutputs(ctx, file, heldOut, rois);
    return { rpn: rel(o.rpn, dense.rpn), box: rel(o.box, dense.box), mask: rel(o.mask, dense.mask) };
  };
  const plain = await errors((await prune(ctx, model, options)).file);
  const bodyOnly = await errors((await prune(ctx, model, { ...options, calibration: { images, mode: 'lsq', leastSquares: { heads: false } } })).file);
  const withHeads = await prune(ctx, model, { ...options, calibration: { images, mode: 'lsq' } });
  const full = await errors(withHeads.file);
  const f = (e: typeof plain) => `rpn ${e.rpn.toFixed(3)}, box ${e.box.toFixed(3)}, mask ${e.mask.toFixed(3)}`;
  console.log(`    relative error of the head outputs: pruned ${f(plain)}; body refitted ${f(bodyOnly)}; body and heads ${f(full)}`);
  const fitted = withHeads.report.calibration!.leastSquares!;
  console.log(`    heads refitted: ${fitted.layers.filter((l) => !l.layer.startsWith('backbone')).map((l) => l.layer).join(', ')}; skipped: ${fitted.skipped?.join('; ') || 'none'}`);
  assert.not.ok(fitted.skipped?.length, 'every head layer was refitted');
  for (const k of ['rpn', 'box', 'mask'] as const) assert.ok(full[k] < bodyOnly[k] && full[k] < plain[k], `${k}: the heads' refit brings its outputs closer`);
  loadMaskRCNNWeights(withHeads.file);
});

calib.run();
lsq.run();
stats.run();
bn.run();
ne.run();
