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
import { listCalibrationImages } from '../prune/calibrationImages.ts';
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
import { assertClose, f32Accum, type Tolerance } from './tolerance.ts';
import { normalizationTable, recordPreprocess, resizePlan } from '../engine/kernels/preprocess.ts';
import { ResNetFpn } from '../engine/maskrcnn/backbone.ts';
import type { SafetensorsFile } from '../weights-loader/safetensors.ts';
import { prune, CalibrationError, type CalibrationImage, type PruneOptions } from '../prune/index.ts';
import { bodyBnLayers } from '../prune/bnStatistics.ts';
import { canonicalizeKeys, loadMaskRCNNWeights, maskrcnnParseOptions, parseMaskRCNNMeta } from '../weights-loader/maskrcnn.ts';

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

/** The FPN maps (P2..P5, pool) of `file` on one image, through the engine's own backbone. */
async function fpnMaps(ctx: GpuContext, file: SafetensorsFile, image: CalibrationImage): Promise<Float32Array[]> {
  const weights = loadMaskRCNNWeights(file);
  const net = new ResNetFpn(ctx, weights);
  const rec = new Recorder(ctx, 'fpn maps');
  try {
    const plan = resizePlan(image.height, image.width, weights.meta.minSize, weights.meta.maxSize);
    const table = rec.input('table', normalizationTable(weights.meta.imageMean, weights.meta.imageStd), [256, 3]);
    const { image: input, output } = recordPreprocess(rec, plan, table);
    input.write(image.data, 3);
    const levels = net.recordFpn(rec, net.recordBody(rec, output));
    rec.submit();
    return await Promise.all(levels.map((l) => ctx.readF32(l.buffer, l.shape.reduce((a, b) => a * b, 1))));
  } finally {
    rec.destroy();
    net.destroy();
  }
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

async function runNeCase(ctx: GpuContext, c: NeCase, seed: number, tile?: NormalEquationsSpec['tile'], repeats = 1): Promise<void> {
  const spec: NormalEquationsSpec = { cin: c.cin, kernel: c.k, stride: c.stride, padding: c.padding, targets: c.targets, tile };
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
    for (let r = 0; r < repeats; r++) recordNormalEquations(rec, spec, io);
    rec.submit();
    const got = await ctx.readF32(gram.buffer, features * columns);
    const want = normalEquationsRef(refArgs, x, t, base).gram.map((v) => v * repeats);
    assertClose(upperPart(got, features, columns), upperPart(want, features, columns), f32Accum, `${c.name}${tile ? `, tile ${tile.tm}x${tile.tn} wg ${tile.wgX}x${tile.wgY}` : ''}${repeats > 1 ? `, ${repeats} dispatches` : ''}`);
  } finally {
    rec.destroy();
  }
}

const ne = gpuSuite('normal_equations');
neCases.forEach((c, i) => ne.test(c.name, (ctx) => runNeCase(ctx, c, 700 + 17 * i)));
ne.test('every register tile gives the same sums; dispatches accumulate', async (ctx) => {
  for (const tile of [
    { tm: 1, tn: 1, wgX: 8, wgY: 8 },
    { tm: 8, tn: 4, wgX: 4, wgY: 4 },
    { tm: 2, tn: 8, wgX: 16, wgY: 2 },
  ]) {
    await runNeCase(ctx, neCases[1], 801, tile);
  }
  await runNeCase(ctx, neCases[0], 802, undefined, 3);
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
  for (const l of bodyBnLayers()) {
    const w = want.get(l.bn)!;
    assertClose(got.get(`${l.bn}.running_mean`)!.data, w.mean, bodyStats, `${l.bn}.running_mean`);
    assertClose(got.get(`${l.bn}.running_var`)!.data, w.variance, bodyStats, `${l.bn}.running_var`);
    if (got.get(`${l.bn}.running_var`)!.data.some((v, c) => v !== pruned.get(`${l.bn}.running_var`)!.data[c])) changed++;
  }
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
    (['compact', 'mask'] as const).map(async (mode) => (await prune(ctx, tiny, { ratio: 0.4, scope: 'layer', mode, calibration: { images } })).file),
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
    assert.is(JSON.parse(file.metadata.calibration).images, 2);

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

calib.run();
stats.run();
bn.run();
ne.run();
