// Calibration after pruning (prune/calibrate*.ts) and its kernels: per-channel statistics
// (channel_stats) and train-mode batch norm (batch_norm_apply) against their float64 references
// on seeded, awkward shapes (1 channel, 37 channels, a 1x1 plane, planes that are not a multiple
// of the workgroup, batches, values far from zero, constant channels, shared output buffers).

import * as assert from 'uvu/assert';
import type { GpuContext } from '../engine/gpu.ts';
import { BatchNormApply } from '../engine/kernels/batchNormApply.ts';
import { recordChannelStats } from '../engine/kernels/channelStats.ts';
import { Recorder } from '../engine/recorder.ts';
import { gpuSuite } from './harness.ts';
import { normal, uniform } from './random.ts';
import { batchNormTrainRef } from './reference/batch_norm_apply.ts';
import { channelStatsRef } from './reference/channel_stats.ts';
import { assertClose, type Tolerance } from './tolerance.ts';

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

stats.run();
bn.run();
