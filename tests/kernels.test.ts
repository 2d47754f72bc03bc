// Every core kernel against its float64 CPU reference on seeded random inputs with awkward
// shapes: odd sizes, stride 2 on odd inputs, 1 and 37 channels, 1x1 and 7x7 kernels, dilation 2,
// sizes that are not multiples of the workgroup or of the register tile.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { floatToHalf, halfToFloat } from '../weights-loader/float16.ts';
import { Conv2d, type Conv2dSpec } from '../engine/kernels/conv2d.ts';
import { convClass, DEFAULT_CONV_TILING, DIRECT_FALLBACK_TILE, tileName, type ConvTiling } from '../engine/kernels/convTiling.ts';
import { QUICK_CONV_TILE } from '../engine/tiers.ts';
import { ConvTranspose2d } from '../engine/kernels/convTranspose2d.ts';
import { Linear } from '../engine/kernels/linear.ts';
import { recordMatmul } from '../engine/kernels/matmul.ts';
import { recordMaxPool2d, maxPoolOutputShape } from '../engine/kernels/maxpool2d.ts';
import { recordSigmoid } from '../engine/kernels/sigmoid.ts';
import { recordUpsampleNearestAdd } from '../engine/kernels/upsampleNearestAdd.ts';
import type { GpuContext } from '../engine/gpu.ts';
import { Recorder } from '../engine/recorder.ts';
import { convTilingCacheFile, readConvTilingCache, useCachedConvTiling, writeConvTilingCache } from '../io/tiles.ts';
import { gpuSuite } from './harness.ts';
import { normal, uniform } from './random.ts';
import { conv2dRef, convTranspose2dRef } from './reference/conv2d.ts';
import { linearRef, matmulRef, sigmoidRef } from './reference/dense.ts';
import { maxPool2dRef, upsampleNearestAddRef } from './reference/pooling.ts';
import { assertClose, exact, f32Accum, strict, type Tolerance } from './tolerance.ts';

interface ConvCase {
  name: string;
  batch: number;
  cin: number;
  cout: number;
  h: number;
  w: number;
  k: [number, number];
  stride?: [number, number];
  padding?: [number, number];
  dilation?: [number, number];
  relu?: boolean;
  residual?: boolean;
}

const convCases: ConvCase[] = [
  { name: '3x3 s1 p1, 37->37 ch, odd 13x11, ReLU', batch: 1, cin: 37, cout: 37, h: 13, w: 11, k: [3, 3], padding: [1, 1], relu: true },
  { name: '3x3 s2 p1 on odd 15x9, 16->33 ch', batch: 1, cin: 16, cout: 33, h: 15, w: 9, k: [3, 3], stride: [2, 2], padding: [1, 1] },
  { name: '7x7 s2 p3 stem, 3->8 ch, 23x17', batch: 1, cin: 3, cout: 8, h: 23, w: 17, k: [7, 7], stride: [2, 2], padding: [3, 3], relu: true },
  { name: '1x1 s1, 1->5 ch (single input channel)', batch: 1, cin: 1, cout: 5, h: 7, w: 5, k: [1, 1] },
  { name: '1x1 s2 downsample on odd 9x7, 37->12 ch', batch: 1, cin: 37, cout: 12, h: 9, w: 7, k: [1, 1], stride: [2, 2] },
  { name: '1x1, 12->1 ch + residual + ReLU', batch: 1, cin: 12, cout: 1, h: 6, w: 10, k: [1, 1], residual: true, relu: true },
  { name: '3x3 dilation 2 pad 2, 8->9 ch', batch: 1, cin: 8, cout: 9, h: 12, w: 14, k: [3, 3], padding: [2, 2], dilation: [2, 2] },
  { name: '3x3 p1 + residual + ReLU, batch 3 (RoI batch), 10->6 ch, 5x5', batch: 3, cin: 10, cout: 6, h: 5, w: 5, k: [3, 3], padding: [1, 1], residual: true, relu: true },
  { name: 'stride 2x1, padding 0x2, 2x5 kernel, 6->7 ch', batch: 1, cin: 6, cout: 7, h: 11, w: 8, k: [2, 5], stride: [2, 1], padding: [0, 2] },
  { name: '1x1 input 1x1 pixel, 3x3 p1, 4->4 ch', batch: 1, cin: 4, cout: 4, h: 1, w: 1, k: [3, 3], padding: [1, 1] },
];

async function runConvCase(ctx: GpuContext, c: ConvCase, seed: number, tile?: Conv2dSpec['tile']): Promise<void> {
  const fanIn = c.cin * c.k[0] * c.k[1];
  const x = normal(seed, c.batch * c.cin * c.h * c.w);
  const w = normal(seed + 1, c.cout * fanIn, Math.sqrt(2 / fanIn));
  const b = uniform(seed + 2, c.cout, -0.5, 0.5);
  const spec: Conv2dSpec = { cin: c.cin, cout: c.cout, kernel: c.k, stride: c.stride, padding: c.padding, dilation: c.dilation, relu: c.relu, residual: c.residual, tile };
  const conv = new Conv2d(ctx, spec, w, b, 'conv-test');
  const outShape = conv.outputShape({ batch: c.batch, h: c.h, w: c.w });
  const outCount = c.batch * c.cout * outShape.h * outShape.w;
  const res = c.residual ? normal(seed + 3, outCount) : undefined;
  const rec = new Recorder(ctx, 'conv-test');
  let got: Float32Array;
  try {
    // Batch 1 as [C, H, W], larger batches as [N, C, H, W]: both ranks are recorded.
    const shape = (ch: number, h: number, w: number) => (c.batch === 1 ? [ch, h, w] : [c.batch, ch, h, w]);
    const input = rec.input('x', x, shape(c.cin, c.h, c.w));
    const residual = res ? rec.input('res', res, shape(c.cout, outShape.h, outShape.w)) : undefined;
    const output = conv.record(rec, input, { residual });
    assert.equal(output.shape, shape(c.cout, outShape.h, outShape.w), 'output shape');
    rec.submit();
    got = await ctx.readF32(output.buffer, outCount);
  } finally {
    rec.destroy();
    conv.destroy();
  }
  const want = conv2dRef(
    { batch: c.batch, cin: c.cin, h: c.h, w: c.w, cout: c.cout, kh: c.k[0], kw: c.k[1], stride: c.stride, padding: c.padding, dilation: c.dilation, relu: c.relu },
    x,
    w,
    b,
    res,
  );
  if (want.oh !== outShape.h || want.ow !== outShape.w) throw new Error(`output size ${outShape.h}x${outShape.w}, reference ${want.oh}x${want.ow}`);
  assertClose(got, want.data, f32Accum, tile ? `${c.name}, tile ${tile.tm}x${tile.tn} wg ${tile.wgX}x${tile.wgY}` : c.name);
}

const conv = gpuSuite('conv2d');
convCases.forEach((c, i) => conv.test(c.name, (ctx) => runConvCase(ctx, c, 100 + i * 7)));
conv.test('every register/workgroup tile gives the same result', async (ctx) => {
  const c = convCases[1];
  for (const tile of [
    { tm: 1, tn: 1, wgX: 8, wgY: 8 },
    { tm: 2, tn: 4, wgX: 16, wgY: 2 },
    { tm: 8, tn: 4, wgX: 4, wgY: 4 },
    { tm: 4, tn: 8, wgX: 4, wgY: 4 },
  ]) {
    await runConvCase(ctx, c, 555, tile);
  }
});
conv.test('the quick tier (QUICK_CONV_TILE: epilogue from params.flags) matches the reference on every case', async (ctx) => {
  // The stand-ins of engine/tiers.ts: one compiled variant per kernel shape, ReLU and residual as uniforms.
  for (const [i, c] of convCases.entries()) await runConvCase(ctx, c, 100 + i * 7, QUICK_CONV_TILE);
});
conv.test('a GPU-side batch limit computes only the live batch entries (tuned and quick tiers)', async (ctx) => {
  for (const tile of [undefined, QUICK_CONV_TILE]) await batchLimitCase(ctx, tile);
});
async function batchLimitCase(ctx: GpuContext, tile: Conv2dSpec['tile']): Promise<void> {
  const c = { batch: 5, cin: 6, cout: 4, h: 5, w: 4 };
  const x = normal(950, c.batch * c.cin * c.h * c.w);
  const w = normal(951, c.cout * c.cin * 9, 0.3);
  const b = uniform(952, c.cout);
  const op = new Conv2d(ctx, { cin: c.cin, cout: c.cout, kernel: [3, 3], padding: [1, 1], relu: true, tile }, w, b, 'conv-batch-limit');
  const per = c.cout * c.h * c.w;
  const rec = new Recorder(ctx, 'conv-batch-limit');
  let got: Float32Array;
  try {
    const output = rec.input('y', new Float32Array(c.batch * per).fill(-7), [c.batch, c.cout, c.h, c.w]); // sentinel
    const input = rec.input('x', x, [c.batch, c.cin, c.h, c.w]);
    op.record(rec, input, { output, batchLimit: rec.input('limit', new Uint32Array([2])) });
    rec.submit();
    got = await ctx.readF32(output.buffer, c.batch * per);
  } finally {
    rec.destroy();
    op.destroy();
  }
  const want = conv2dRef({ ...c, kh: 3, kw: 3, padding: [1, 1], relu: true }, x, w, b).data;
  assertClose(got.subarray(0, 2 * per), want.subarray(0, 2 * per), f32Accum, 'live entries');
  if (!got.subarray(2 * per).every((v) => v === -7)) throw new Error('entries past the limit were written');
}
conv.test('rejects a residual buffer the spec does not declare', async (ctx) => {
  const conv = new Conv2d(ctx, { cin: 1, cout: 1, kernel: [1, 1] }, new Float32Array(1));
  const rec = new Recorder(ctx, 'residual-misuse');
  let message = '';
  try {
    const x = rec.input('x', new Float32Array(4), [1, 2, 2]);
    const residual = rec.input('res', new Float32Array(4), [1, 2, 2]);
    conv.record(rec, x, { residual });
  } catch (e) {
    message = (e as Error).message;
  } finally {
    rec.destroy();
    conv.destroy();
  }
  if (!/residual given but the conv has no residual/.test(message)) throw new Error(`expected a residual error, got '${message}'`);
});
conv.run();

const transposed = gpuSuite('convTranspose2d');
for (const [i, c] of [
  { batch: 1, cin: 5, cout: 7, h: 3, w: 4, scale: 2, relu: true },
  { batch: 4, cin: 37, cout: 9, h: 7, w: 7, scale: 2, relu: true },
  { batch: 2, cin: 3, cout: 2, h: 5, w: 3, scale: 3, relu: false },
].entries()) {
  transposed.test(`k=s=${c.scale}, ${c.cin}->${c.cout} ch, batch ${c.batch}, ${c.h}x${c.w}${c.relu ? ', ReLU' : ''}`, async (ctx) => {
    const x = normal(300 + i, c.batch * c.cin * c.h * c.w);
    const w = normal(310 + i, c.cin * c.cout * c.scale * c.scale, Math.sqrt(1 / c.cin));
    const b = uniform(320 + i, c.cout, -0.5, 0.5);
    const op = new ConvTranspose2d(ctx, c, w, b, 'deconv-test');
    const outCount = c.batch * c.cout * c.h * c.scale * c.w * c.scale;
    const rec = new Recorder(ctx, 'deconv-test');
    try {
      const output = op.record(rec, rec.input('x', x, [c.batch, c.cin, c.h, c.w]));
      assert.equal(output.shape, [c.batch, c.cout, c.h * c.scale, c.w * c.scale], 'output shape');
      rec.submit();
      assertClose(await ctx.readF32(output.buffer, outCount), convTranspose2dRef(c, x, w, b), f32Accum, 'convTranspose2d');
    } finally {
      rec.destroy();
      op.destroy();
    }
  });
}
transposed.run();

const pool = gpuSuite('maxpool2d');
for (const [i, c] of [
  { planes: 5, h: 17, w: 13, kernel: 3, stride: 2, padding: 1 }, // the stem pool on odd sizes
  { planes: 37, h: 7, w: 9, kernel: 1, stride: 2, padding: 0 }, // FPN "pool" level
  { planes: 1, h: 1, w: 1, kernel: 3, stride: 2, padding: 1 },
  { planes: 3, h: 8, w: 6, kernel: 2, stride: 2, padding: 0 },
].entries()) {
  pool.test(`k${c.kernel} s${c.stride} p${c.padding} on ${c.planes}x${c.h}x${c.w}`, async (ctx) => {
    const x = normal(400 + i, c.planes * c.h * c.w);
    const out = maxPoolOutputShape(c, { batch: 1, h: c.h, w: c.w });
    const rec = new Recorder(ctx, 'maxpool-test');
    try {
      const output = recordMaxPool2d(rec, c, rec.input('x', x, [c.planes, c.h, c.w]));
      assert.equal(output.shape, [c.planes, out.h, out.w], 'output shape');
      rec.submit();
      const want = maxPool2dRef(c, x);
      assertClose(await ctx.readF32(output.buffer, want.data.length), want.data, exact, 'maxpool2d');
    } finally {
      rec.destroy();
    }
  });
}
pool.run();

const upsample = gpuSuite('upsampleNearestAdd');
for (const [i, c] of [
  { planes: 3, h: 26, w: 34, topH: 13, topW: 17 }, // exact x2
  { planes: 2, h: 25, w: 17, topH: 13, topW: 9 }, // odd sizes: the FPN case for inputs not divisible by 32
  { planes: 37, h: 7, w: 3, topH: 4, topW: 2 },
  { planes: 1, h: 200, w: 301, topH: 100, topW: 151 }, // where float32 index rounding would show
].entries()) {
  upsample.test(`${c.topH}x${c.topW} -> ${c.h}x${c.w}, ${c.planes} planes`, async (ctx) => {
    const lat = normal(500 + i, c.planes * c.h * c.w);
    const top = normal(510 + i, c.planes * c.topH * c.topW);
    const rec = new Recorder(ctx, 'upsample-test');
    try {
      const lateral = rec.input('lat', lat, [c.planes, c.h, c.w]);
      const output = recordUpsampleNearestAdd(rec, lateral, rec.input('top', top, [c.planes, c.topH, c.topW]));
      rec.submit();
      // One float32 add on both sides: the reference's float64 sum rounds to the same float32.
      const want = upsampleNearestAddRef(c, lat, top).map(Math.fround);
      assertClose(await ctx.readF32(output.buffer, lat.length), want, exact, 'upsampleNearestAdd');
    } finally {
      rec.destroy();
    }
  });
}
upsample.run();

const dense = gpuSuite('linear and matmul');
for (const [i, c] of [
  { rows: 1, inF: 37, outF: 5, relu: true },
  { rows: 13, inF: 100, outF: 33, relu: true },
  { rows: 37, inF: 12, outF: 1, relu: false },
].entries()) {
  dense.test(`linear ${c.rows} rows, ${c.inF} -> ${c.outF}${c.relu ? ' + ReLU' : ''}`, async (ctx) => {
    const x = normal(600 + i, c.rows * c.inF);
    const w = normal(610 + i, c.outF * c.inF, Math.sqrt(1 / c.inF));
    const b = uniform(620 + i, c.outF, -0.5, 0.5);
    const lin = new Linear(ctx, c.inF, c.outF, w, b, c.relu, 'linear-test');
    const rec = new Recorder(ctx, 'linear-test');
    try {
      const output = lin.record(rec, rec.input('x', x, [c.rows, c.inF]));
      assert.equal(output.shape, [c.rows, c.outF], 'output shape');
      rec.submit();
      assertClose(await ctx.readF32(output.buffer, c.rows * c.outF), linearRef(c.rows, c.inF, c.outF, x, w, b, c.relu), f32Accum, 'linear');
    } finally {
      rec.destroy();
      lin.destroy();
    }
  });
}
dense.test('matmul 67x45x29 (no dimension a tile multiple)', async (ctx) => {
  const [m, n, k] = [67, 45, 29];
  const a = normal(700, m * k);
  const b = normal(701, k * n);
  const rec = new Recorder(ctx, 'matmul-test');
  try {
    const c = recordMatmul(rec, {}, { m, n, k }, { a: rec.input('a', a, [m, k]), b: rec.input('b', b, [k, n]) }, 'matmul-test');
    assert.equal(c.shape, [m, n], 'output shape');
    rec.submit();
    assertClose(await ctx.readF32(c.buffer, m * n), matmulRef(m, n, k, a, b), f32Accum, 'matmul');
  } finally {
    rec.destroy();
  }
});
dense.run();

const sig = gpuSuite('sigmoid');
sig.test('sigmoid over 1000 values incl. +-90 and 0', async (ctx) => {
  const x = normal(800, 1000, 6);
  x[0] = 90;
  x[1] = -90;
  x[2] = 0;
  const rec = new Recorder(ctx, 'sigmoid-test');
  let got: Float32Array;
  try {
    const output = recordSigmoid(rec, rec.input('x', x));
    rec.submit();
    got = await ctx.readF32(output.buffer, x.length);
  } finally {
    rec.destroy();
  }
  assertClose(got, sigmoidRef(x), strict, 'sigmoid');
  if (Number.isNaN(got[0]) || Number.isNaN(got[1])) throw new Error('sigmoid overflowed to NaN');
});
sig.run();

// ---- conv2d: vec4 paths, tiles, per-adapter tiling, f16 weights ------------------------------
// Weights are read as vec4 along Cout (Cout rounded up to 4 with zeros) and 1x1/stride-1 inputs
// as vec4 along pixels when OH*OW is a multiple of 4: pruned counts (37, 13) and planes that are
// not a multiple of 4 take the tails.
const convVec = gpuSuite('conv2d vec4 paths and tiling');
const vecCases: ConvCase[] = [
  { name: '1x1, 32->16 ch, 6x8 (vec4 pixels, batch 2), ReLU', batch: 2, cin: 32, cout: 16, h: 6, w: 8, k: [1, 1], relu: true },
  { name: '1x1, 37->13 ch, 5x9 = 45 px (scalar pixel tail)', batch: 1, cin: 37, cout: 13, h: 5, w: 9, k: [1, 1] },
  { name: '1x1, 37->13 ch, 4x7 = 28 px (vec4 pixels, odd channels) + residual', batch: 1, cin: 37, cout: 13, h: 4, w: 7, k: [1, 1], residual: true, relu: true },
  { name: '3x3 p1, 37->13 ch, 9x7', batch: 1, cin: 37, cout: 13, h: 9, w: 7, k: [3, 3], padding: [1, 1], relu: true },
  { name: '3x3 p1, 64->32 ch, 10x12', batch: 1, cin: 64, cout: 32, h: 10, w: 12, k: [3, 3], padding: [1, 1] },
];
vecCases.forEach((c, i) => convVec.test(c.name, (ctx) => runConvCase(ctx, c, 300 + i * 11)));
// Big enough (>= 4096 output pixels) for the large classes' default tile, 16x8 per invocation.
convVec.test('default large tiles: 3x3 p1 8->20 ch on 70x70, 1x1 16->12 ch on 64x64 (vec4 pixels)', async (ctx) => {
  await runConvCase(ctx, { name: '3x3 70x70', batch: 1, cin: 8, cout: 20, h: 70, w: 70, k: [3, 3], padding: [1, 1], relu: true }, 360);
  await runConvCase(ctx, { name: '1x1 64x64', batch: 1, cin: 16, cout: 12, h: 64, w: 64, k: [1, 1], residual: true }, 361);
});
vecCases.forEach((c, i) => {
  if (i < 2) convVec.test(`${c.name}, tile 8x4/wg8x1`, (ctx) => runConvCase(ctx, c, 300 + i * 11, { tm: 8, tn: 4, wgX: 8, wgY: 1 }));
});

async function convOnce(ctx: GpuContext, spec: Conv2dSpec, x: Float32Array, w: Float32Array, b: Float32Array, shape: { batch: number; h: number; w: number }): Promise<Float32Array> {
  const conv = new Conv2d(ctx, spec, w, b, 'conv-once');
  const o = conv.outputShape(shape);
  const count = shape.batch * spec.cout * o.h * o.w;
  const rec = new Recorder(ctx, 'conv-once');
  try {
    const output = conv.record(rec, rec.input('x', x, [shape.batch, spec.cin, shape.h, shape.w]));
    rec.submit();
    return await ctx.readF32(output.buffer, count);
  } finally {
    rec.destroy();
    conv.destroy();
  }
}

convVec.test('tiles give bit-identical results (each output sums its K terms in the same order)', async (ctx) => {
  const shape = { batch: 2, h: 7, w: 9 };
  const spec: Conv2dSpec = { cin: 21, cout: 19, kernel: [3, 3], stride: [2, 1], padding: [1, 1], relu: true };
  const x = normal(320, shape.batch * spec.cin * shape.h * shape.w);
  const w = normal(321, spec.cout * spec.cin * 9, 0.2);
  const b = uniform(322, spec.cout);
  const first = await convOnce(ctx, { ...spec, tile: { tm: 1, tn: 1, wgX: 8, wgY: 8 } }, x, w, b, shape);
  for (const tile of [
    { tm: 2, tn: 3, wgX: 4, wgY: 2 },
    { tm: 8, tn: 3, wgX: 16, wgY: 1 },
  ]) {
    const got = await convOnce(ctx, { ...spec, tile }, x, w, b, shape);
    assertClose(got, first, exact, `tile ${tileName(tile)} vs 1x1/wg8x8`);
  }
});

convVec.test('conv classes, tile checks and ctx.setConvTiling', (ctx) => {
  assert.is(convClass(256, 3, 3, 10 * 16), 'tiny');
  assert.is(convClass(3, 7, 7, 200 * 272), 'stem');
  assert.is(convClass(256, 1, 1, 100 * 136), 'pointwise-large');
  assert.is(convClass(256, 1, 1, 25 * 34), 'pointwise-small');
  assert.is(convClass(64, 3, 3, 200 * 272, [2, 2]), 'spatial-large');
  assert.is(convClass(512, 3, 3, 50 * 68, [2, 2]), 'spatial-small');
  assert.is(convClass(64, 3, 3, 200 * 272, [1, 1], [1, 1]), 'winograd-large');
  assert.is(convClass(512, 3, 3, 25 * 34, [1, 1], [1, 1]), 'winograd-small');
  assert.is(convClass(512, 3, 3, 25 * 34, [2, 2], [1, 1]), 'spatial-small');
  assert.is(convClass(8, 3, 3, 12 * 14, [1, 1], [2, 2]), 'tiny');
  assert.is(convClass(64, 3, 3, 100 * 100, [1, 1], [2, 2]), 'spatial-large');
  assert.throws(() => ctx.setConvTiling({ stem: { tm: 3, tn: 4, wgX: 8, wgY: 1 } }), /tm must be 1, 2 or a multiple of 4/);
  assert.throws(() => ctx.setConvTiling({ bogus: DEFAULT_CONV_TILING.stem } as ConvTiling), /unknown conv class 'bogus'/);
  const tile = { tm: 4, tn: 4, wgX: 16, wgY: 1 };
  const conv = new Conv2d(ctx, { cin: 8, cout: 4, kernel: [3, 3], padding: [1, 1] }, new Float32Array(4 * 8 * 9), undefined, 'tiling');
  // 3x3 stride 1: a Winograd class; stride 2: a spatial one; f16 weights fall back to direct.
  const strided = new Conv2d(ctx, { cin: 8, cout: 4, kernel: [3, 3], stride: [2, 2], padding: [1, 1] }, new Float32Array(4 * 8 * 9), undefined, 'tiling s2');
  const winograd = { ...tile, winograd: 2 as const };
  try {
    ctx.setConvTiling({ 'winograd-small': tile, 'spatial-small': winograd });
    assert.equal(conv.tileFor({ batch: 1, h: 40, w: 40 }), tile);
    assert.equal(conv.tileFor({ batch: 1, h: 100, w: 100 }), DEFAULT_CONV_TILING['winograd-large']);
    assert.equal(conv.tileFor({ batch: 1, h: 10, w: 10 }), DEFAULT_CONV_TILING.tiny);
    assert.equal(strided.tileFor({ batch: 1, h: 80, w: 80 }), DIRECT_FALLBACK_TILE, 'a Winograd tile in a class of strided convs falls back to direct');
    ctx.setConvTiling({ 'winograd-small': winograd });
    assert.equal(conv.tileFor({ batch: 1, h: 40, w: 40 }), winograd);
    assert.throws(() => new Conv2d(ctx, { cin: 8, cout: 4, kernel: [3, 3], stride: [2, 2], tile: winograd }, new Float32Array(4 * 8 * 9)), /asks for Winograd, which needs a 3x3 kernel, stride 1/);
    assert.throws(() => ctx.setConvTiling({ 'winograd-small': { ...tile, winograd: 3 as 2 } }), /winograd must be 2/);
    if (ctx.device.features.has('shader-f16')) {
      const half = new Conv2d(ctx, { cin: 8, cout: 4, kernel: [3, 3], padding: [1, 1], precision: 'f16' }, new Float32Array(4 * 8 * 9), undefined, 'tiling f16');
      assert.equal(half.tileFor({ batch: 1, h: 40, w: 40 }), DIRECT_FALLBACK_TILE, 'f16 weights take the direct fallback');
      half.destroy();
    }
  } finally {
    ctx.setConvTiling(undefined);
    conv.destroy();
    strided.destroy();
  }
  assert.equal(ctx.convTiling, DEFAULT_CONV_TILING, 'undefined returns to the defaults');
});

convVec.test('the tile cache: per adapter, under MASKGPU_CACHE_DIR, ignored when malformed', (ctx) => {
  const dir = mkdtempSync(join(tmpdir(), 'maskgpu-tiles-'));
  // The file is passed explicitly (process.env is left alone); the env argument picks the path.
  const file = convTilingCacheFile({ MASKGPU_CACHE_DIR: dir });
  try {
    assert.is(file, join(dir, 'tiles.json'));
    assert.is(readConvTilingCache(ctx.report, file), undefined);
    const tile = { tm: 8, tn: 4, wgX: 32, wgY: 1 };
    writeConvTilingCache({ ...ctx.report, description: 'another adapter' }, { tiling: { stem: DEFAULT_CONV_TILING.stem }, adapter: 'other', measured: 'test' }, file);
    writeConvTilingCache(ctx.report, { tiling: { 'pointwise-large': tile }, adapter: 'this', measured: 'test' }, file);
    const cached = JSON.parse(readFileSync(join(dir, 'tiles.json'), 'utf8'));
    assert.is(Object.keys(cached.adapters).length, 2, 'both adapters kept');
    assert.is(useCachedConvTiling(ctx, file), file);
    assert.equal(ctx.convTiling['pointwise-large'], tile);
    assert.equal(ctx.convTiling.stem, DEFAULT_CONV_TILING.stem);
    ctx.setConvTiling(undefined);
    writeFileSync(join(dir, 'tiles.json'), '{ not json');
    const warn = console.warn;
    let warned = '';
    console.warn = (m: string) => (warned = m);
    try {
      assert.is(useCachedConvTiling(ctx, file), undefined);
      assert.equal(ctx.convTiling, DEFAULT_CONV_TILING);
    } finally {
      console.warn = warn;
    }
    assert.match(warned, /ignoring the conv tile cache/);
  } finally {
    ctx.setConvTiling(undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});

convVec.test('floatToHalf (f16 conv weights) rounds to nearest even, keeps subnormals, overflows to infinity', () => {
  const cases: Array<[number, number]> = [
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65520, 0x7c00],
    [2 ** -24, 0x0001],
    [2 ** -26, 0x0000],
    [1 + 2 ** -11, 0x3c00], // tie: to even
    [1 + 3 * 2 ** -11, 0x3c02], // tie: to even (up)
    [0.1, 0x2e66],
    [-0, 0x8000],
    [Infinity, 0x7c00],
  ];
  const bits = cases.map((c) => floatToHalf(c[0]));
  cases.forEach(([v, want], i) => assert.is(bits[i], want, `${v} -> 0x${bits[i].toString(16)}, expected 0x${want.toString(16)}`));
  assert.ok(Number.isNaN(halfToFloat(floatToHalf(NaN))));
  for (const v of [0.1, -3.5, 1e-6, 1234.5]) assert.ok(Math.abs(halfToFloat(floatToHalf(v)) - v) <= Math.abs(v) * 2 ** -11 + 2 ** -25);
});

convVec.test('half-size residual (fused FPN merge): conv + nearest x2 upsample-add, bit-identical to the two kernels (tuned and quick tiers)', async (ctx) => {
  for (const tile of [undefined, QUICK_CONV_TILE]) await halfResidualCase(ctx, tile);
});
async function halfResidualCase(ctx: GpuContext, tile: Conv2dSpec['tile']): Promise<void> {
  const c = { batch: 2, cin: 37, cout: 13, h: 10, w: 14 };
  const spec: Conv2dSpec = { cin: c.cin, cout: c.cout, kernel: [1, 1], tile };
  const x = normal(330, c.batch * c.cin * c.h * c.w);
  const w = normal(331, c.cout * c.cin, 0.2);
  const b = uniform(332, c.cout);
  const top = normal(333, c.batch * c.cout * (c.h / 2) * (c.w / 2));
  const conv = new Conv2d(ctx, spec, w, b, 'fpn-fused');
  const count = c.batch * c.cout * c.h * c.w;
  const planes = c.batch * c.cout;
  const rec = new Recorder(ctx, 'fpn-fused');
  try {
    const input = rec.input('x', x, [c.batch, c.cin, c.h, c.w]);
    const topT = rec.input('top', top, [c.batch, c.cout, c.h / 2, c.w / 2]);
    const fused = conv.record(rec, input, { residualHalf: topT });
    const lateral = conv.record(rec, input);
    const merged = recordUpsampleNearestAdd(rec, lateral, topT);
    rec.submit();
    const got = await ctx.readF32(fused.buffer, count);
    const conv64 = conv2dRef({ ...c, kh: 1, kw: 1 }, x, w, b).data;
    assertClose(got, upsampleNearestAddRef({ planes, h: c.h, w: c.w, topH: c.h / 2, topW: c.w / 2 }, conv64, top), f32Accum, 'fused vs float64');
    assertClose(got, await ctx.readF32(merged.buffer, count), exact, 'fused vs conv then upsampleNearestAdd');
    const odd = { ...input, shape: [1, c.cin, 9, 14] };
    assert.throws(() => conv.record(rec, odd, { output: fused, residualHalf: topT }), /even output size/);
  } finally {
    rec.destroy();
    conv.destroy();
  }
}

// f16 weights: the GPU must compute exactly conv(x, f16(w)) with f32 sums, and stay within a stated
// distance of the f32 conv (weights rounded to 11 significant bits: relative error <= 2^-11 each).
const f16Rounded: Tolerance = { name: 'f16 weights vs f32', abs: 2e-3, rel: 2e-3 };
convVec.test('f16 weights (shader-f16): equal to the conv of the f16-rounded weights; near f32', async (ctx) => {
  const c = { batch: 1, cin: 37, cout: 13, h: 9, w: 7 };
  const spec: Conv2dSpec = { cin: c.cin, cout: c.cout, kernel: [3, 3], padding: [1, 1], relu: true, precision: 'f16' };
  const x = normal(340, c.cin * c.h * c.w);
  const w = normal(341, c.cout * c.cin * 9, Math.sqrt(2 / (c.cin * 9)));
  const b = uniform(342, c.cout);
  if (!ctx.device.features.has('shader-f16')) {
    assert.throws(() => new Conv2d(ctx, spec, w, b), /needs the WebGPU feature 'shader-f16'.*use precision 'f32'/);
    return;
  }
  const got = await convOnce(ctx, spec, x, w, b, c);
  const w16 = Float32Array.from(Uint16Array.from(w, floatToHalf), halfToFloat);
  const ref = (weights: Float32Array) => conv2dRef({ ...c, cout: c.cout, kh: 3, kw: 3, padding: [1, 1], relu: true }, x, weights, b).data;
  assertClose(got, ref(w16), f32Accum, 'f16 conv vs float64 conv of the rounded weights');
  assertClose(got, ref(w), f16Rounded, 'f16 conv vs float64 conv of the f32 weights');
});
convVec.run();
