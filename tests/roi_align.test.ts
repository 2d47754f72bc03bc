// MultiScaleRoIAlign and paste_masks_in_image on the GPU against float32-emulating references of
// torchvision's C++/Python code: RoIs of every kind (tiny, zero-size, negative-size, crossing or
// outside the border, whole image, exactly at the level-mapper boundaries), odd feature sizes,
// 1/37/256 channels, P 7 and 14, fewer RoIs than planned; masks pasted from random and adversarial
// (near-0.5) probabilities with boxes partly outside, tiny, or larger than the image, odd widths.

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import type { GpuContext } from '../engine/gpu.ts';
import { decodePasteBoxes, maskRowWords, PASTE_BOX_WORDS, PasteMasks } from '../engine/kernels/pasteMasks.ts';
import { inferFeatureScale, levelAreaThresholds, RoiAlignMultiLevel, torchLevelOfArea, type RoiAlignSpec } from '../engine/kernels/roiAlign.ts';
import type { Tensor } from '../engine/planner.ts';
import { Recorder } from '../engine/recorder.ts';
import { gpuSuite } from './harness.ts';
import { normal, rng, uniform } from './random.ts';
import { levelMapperRef, multiScaleRoiAlignRef, type FeatureMap } from './reference/roi_align.ts';
import { expandBoxRef, packMaskBits, pasteMasksRef } from './reference/paste_masks.ts';
import { assertClose, type Tolerance } from './tolerance.ts';

/**
 * The shader reproduces the C++ kernel's float32 rounding step by step, so on an IEEE-conforming
 * adapter it matches bit for bit (the test prints how many values are identical); the tolerance
 * is `strict`-sized to allow an adapter whose f32 add/mul is not correctly rounded.
 */
const roiAlignTolerance: Tolerance = { name: 'roiAlign', abs: 1e-5, rel: 1e-4 };

const f = Math.fround;
const nextUp = (x: number) => {
  const b = new Float32Array([x]);
  const u = new Uint32Array(b.buffer);
  u[0] += x >= 0 ? 1 : -1;
  return b[0];
};
const nextDown = (x: number) => {
  const b = new Float32Array([x]);
  const u = new Uint32Array(b.buffer);
  u[0] += x > 0 ? -1 : 1;
  return b[0];
};

/** Feature maps P2..P5 as a 3x3 stride-2 pad-1 conv chain makes them from an H x W input. */
function fpnSizes(h: number, w: number): Array<{ height: number; width: number }> {
  const out = [];
  let [fh, fw] = [Math.ceil(h / 2), Math.ceil(w / 2)]; // stem conv
  [fh, fw] = [Math.ceil(fh / 2), Math.ceil(fw / 2)]; // max pool
  for (let l = 0; l < 4; l++) {
    out.push({ height: fh, width: fw });
    [fh, fw] = [Math.ceil(fh / 2), Math.ceil(fw / 2)];
  }
  return out;
}

/** Boxes of every kind for an image of imgH x imgW (resized coordinates), 4 floats each. */
function awkwardBoxes(seed: number, imgH: number, imgW: number, randomCount: number): Float32Array {
  const r = rng(seed);
  const boxes: number[][] = [
    [0, 0, imgW, imgH], // whole image
    [-30, -20, imgW + 40, imgH + 25], // larger than the image
    [10.3, 12.7, 10.6, 12.9], // tiny
    [5, 7, 5, 30], // zero width
    [5, 7, 40, 7], // zero height
    [3, imgH, 50, imgH], // zero height on the bottom edge (samples past the last row)
    [imgW, 3, imgW, 40], // zero width on the right edge
    [imgW - 10, imgH - 8, imgW + 30, imgH + 20], // crossing bottom-right
    [-25, -15, 12, 9], // crossing top-left
    [imgW + 10, 5, imgW + 60, 50], // completely outside (right)
    [-80, -70, -20, -10], // completely outside (top-left)
    [40, 30, 20, 60], // negative width: negative area, torch maps it to no level
    [40, 60, 20, 30], // negative width and height: positive area
    [0.5, 0.5, imgW - 0.5, 0.75], // thin
  ];
  for (let i = 0; i < randomCount; i++) {
    const s = 2 ** (r() * 9 - 1); // sizes 0.5 .. 256 px
    const w = s * (0.5 + r());
    const h = s * (0.5 + r());
    const x = r() * (imgW + 40) - 20 - w / 2;
    const y = r() * (imgH + 40) - 20 - h / 2;
    boxes.push([x, y, x + w, y + h]);
  }
  return new Float32Array(boxes.flat());
}

/**
 * Boxes whose float32 areas are the 12 floats below and the 12 from each level threshold up:
 * power-of-two widths make (x2 - x1) * (y2 - y1) exact, so consecutive heights give consecutive areas.
 */
function boundaryBoxes(kMin: number): Float32Array {
  const out: number[] = [];
  for (const t of levelAreaThresholds(kMin, 4)) {
    const side = 2 ** Math.round(Math.log2(Math.sqrt(t)));
    let h = t / side; // exact
    for (let k = 0; k < 12; k++) h = nextDown(h);
    for (let k = 0; k < 24; k++, h = nextUp(h)) out.push(k % 3, 0, (k % 3) + side, h);
  }
  return new Float32Array(out);
}

interface RoiCase {
  name: string;
  imgH: number; // unpadded resized height (scale inference)
  featureFrom: [number, number]; // size the feature pyramid is built from (padded or not)
  channels: number;
  pooled: number;
  maxRois: number;
  count: number;
  boxes: Float32Array;
  channelsPerInvocation?: number;
}

async function runRoiCase(ctx: GpuContext, c: RoiCase, seed: number): Promise<void> {
  const sizes = fpnSizes(c.featureFrom[0], c.featureFrom[1]);
  const features: FeatureMap[] = sizes.map((s, i) => ({ ...s, data: normal(seed + i, c.channels * s.height * s.width) }));
  const spec: RoiAlignSpec = { channels: c.channels, outputSize: c.pooled, maxRois: c.maxRois, channelsPerInvocation: c.channelsPerInvocation };
  const op = new RoiAlignMultiLevel(ctx, spec, 'roiAlign-test');
  const boxesData = new Float32Array(c.maxRois * 4).fill(Number.NaN); // rows past the count are garbage
  boxesData.set(c.boxes.subarray(0, Math.min(c.boxes.length, c.maxRois * 4)));
  const per = c.channels * c.pooled * c.pooled;
  const rec = new Recorder(ctx, 'roiAlign-test');
  let got: Float32Array;
  try {
    const boxes = rec.input('boxes', boxesData, [c.maxRois, 4]);
    const count = rec.input('count', new Uint32Array([c.count]), [1]);
    const featureTensors = features.map((fm) => rec.input('feature', fm.data, [c.channels, fm.height, fm.width]));
    const output = op.record(rec, { features: featureTensors, boxes, count, imageHeight: c.imgH });
    assert.equal(output.shape, [c.maxRois, c.channels, c.pooled, c.pooled], 'output shape');
    ctx.write(output.buffer, new Float32Array(c.maxRois * per).fill(12345)); // stale data must be overwritten (queued before the submit)
    rec.submit();
    got = await ctx.readF32(output.buffer, c.maxRois * per);
  } finally {
    rec.destroy();
  }
  const scales = sizes.map((s) => inferFeatureScale(s.height, c.imgH));
  assert.equal(scales, [1 / 4, 1 / 8, 1 / 16, 1 / 32], 'inferred scales');
  const want = multiScaleRoiAlignRef(features, scales, { channels: c.channels, pooled: c.pooled, samplingRatio: 2 }, boxesData, c.count, c.maxRois);
  let identical = 0;
  for (let i = 0; i < got.length; i++) if (Object.is(got[i], want[i]) || got[i] === want[i]) identical++;
  assertClose(got, want, roiAlignTolerance, `${c.name}: ${identical}/${got.length} bit-identical`);
}

const levelSuite = suite('level mapper thresholds');
levelSuite('thresholds reproduce the float32 formula at and around each boundary', () => {
  const [t1, t2, t3] = levelAreaThresholds(2, 4);
  // Nominal boundaries s = 112, 224, 448 (area 12544, 50176, 200704), moved down by the +1e-6.
  assert.ok(t1 < 12544 && t1 > 12543.9, `t1 ${t1}`);
  assert.ok(t2 < 50176 && t2 > 50175.8, `t2 ${t2}`);
  assert.ok(t3 < 200704 && t3 > 200703, `t3 ${t3}`);
  for (const [k, t] of [t1, t2, t3].entries()) {
    let a = t;
    for (let i = 0; i < 300; i++) a = nextDown(a);
    for (let i = 0; i < 600; i++, a = nextUp(a)) {
      const viaThreshold = (a >= t1 ? 1 : 0) + (a >= t2 ? 1 : 0) + (a >= t3 ? 1 : 0);
      const direct = Math.min(Math.max(torchLevelOfArea(a), 2), 5) - 2;
      if (viaThreshold !== direct) throw new Error(`level ${k + 1} boundary: area ${a} gives ${viaThreshold} by threshold, ${direct} by the formula`);
    }
  }
  assert.is(levelMapperRef([0, 0, 0, 5], 2, 5), 0, 'zero area -> P2');
  assert.is(levelMapperRef([5, 0, 0, 5], 2, 5), -1, 'negative area -> no level');
  assert.is(levelMapperRef([0, 0, 2000, 2000], 2, 5), 3, 'huge -> P5');
});
levelSuite.run();

const roi = gpuSuite('MultiScaleRoIAlign');
const img1: [number, number] = [250, 341]; // resized, padded to 256 x 352
const img2: [number, number] = [97, 131]; // odd and not padded
roi.test('P=7, 37 channels, padded 256x352 pyramid, awkward + random RoIs, count < max', (ctx) =>
  runRoiCase(ctx, { name: 'P7 C37', imgH: img1[0], featureFrom: [256, 352], channels: 37, pooled: 7, maxRois: 90, count: 77, boxes: awkwardBoxes(11, img1[0], img1[1], 80) }, 500),
);
roi.test('channel blocks of 1, 5 (not dividing 37) and 64 give the same result', async (ctx) => {
  for (const cb of [1, 5, 64]) {
    const boxes = awkwardBoxes(15, img1[0], img1[1], 20);
    await runRoiCase(ctx, { name: `P7 C37 block ${cb}`, imgH: img1[0], featureFrom: [256, 352], channels: 37, pooled: 7, maxRois: 40, count: 34, boxes, channelsPerInvocation: cb }, 505);
  }
});
roi.test('P=14, 1 channel, unpadded odd 97x131 pyramid', (ctx) =>
  runRoiCase(ctx, { name: 'P14 C1 odd', imgH: img2[0], featureFrom: img2, channels: 1, pooled: 14, maxRois: 64, count: 60, boxes: awkwardBoxes(12, img2[0], img2[1], 60) }, 510),
);
roi.test('P=14, 256 channels, count 30 of 40', (ctx) =>
  runRoiCase(ctx, { name: 'P14 C256', imgH: img1[0], featureFrom: [256, 352], channels: 256, pooled: 14, maxRois: 40, count: 30, boxes: awkwardBoxes(13, img1[0], img1[1], 30) }, 520),
);
roi.test('RoIs exactly at the level boundaries (areas one ulp apart), P=7, 3 channels', async (ctx) => {
  const boxes = boundaryBoxes(2);
  const n = boxes.length / 4;
  const areas = new Set<number>();
  for (let i = 0; i < n; i++) areas.add(f(f(boxes[4 * i + 2] - boxes[4 * i]) * f(boxes[4 * i + 3] - boxes[4 * i + 1])));
  for (const t of levelAreaThresholds(2, 4)) assert.ok(areas.has(t) && areas.has(nextDown(t)), `areas ${t} and the float below it are both present`);
  const levels = new Set<number>();
  for (let i = 0; i < n; i++) levels.add(levelMapperRef(boxes.subarray(4 * i, 4 * i + 4), 2, 5));
  assert.equal([...levels].sort(), [0, 1, 2, 3], 'the boundary boxes cover both sides of every boundary');
  // A pyramid large enough that the 448-px boxes lie inside it.
  await runRoiCase(ctx, { name: 'boundaries', imgH: 1024, featureFrom: [1024, 1024], channels: 3, pooled: 7, maxRois: n, count: n, boxes }, 530);
});
roi.test('zero RoIs: the whole output becomes zeros', (ctx) =>
  runRoiCase(ctx, { name: 'count 0', imgH: img2[0], featureFrom: img2, channels: 5, pooled: 7, maxRois: 8, count: 0, boxes: awkwardBoxes(14, img2[0], img2[1], 0) }, 540),
);
roi.test('timing: K=1000, C=256, P=7 and K=100, C=256, P=14 at 800x1216 (rows spot-checked)', async (ctx) => {
  const sizes = fpnSizes(800, 1216);
  const features: FeatureMap[] = sizes.map((s, i) => ({ ...s, data: normal(600 + i, 256 * s.height * s.width) }));
  const inputs = new Recorder(ctx, 'roiAlign-features'); // owns the features both runs read
  try {
    const featureTensors = features.map((fm) => inputs.input('feature', fm.data, [256, fm.height, fm.width]));
    const scales = sizes.map((s) => inferFeatureScale(s.height, 800));
    for (const [k, p] of [[1000, 7], [100, 14]]) {
      const boxesData = awkwardBoxes(700 + p, 800, 1199, k).subarray(0, 4 * k);
      const op = new RoiAlignMultiLevel(ctx, { channels: 256, outputSize: p, maxRois: k });
      const rec = new Recorder(ctx, `roiAlign K=${k}`);
      try {
        const boxes = rec.input('boxes', boxesData, [k, 4]);
        const count = rec.input('count', new Uint32Array([k]), [1]);
        const output = op.record(rec, { features: featureTensors, boxes, count, imageHeight: 800 });
        rec.submit(); // warm-up (pipeline compile, first touch)
        await ctx.device.queue.onSubmittedWorkDone();
        const t0 = performance.now();
        rec.submit();
        await ctx.device.queue.onSubmittedWorkDone();
        const ms = performance.now() - t0;
        console.log(`    K=${k} C=256 P=${p}: ${ms.toFixed(1)} ms (${((k * 256 * p * p) / ms / 1e3).toFixed(1)} M outputs/s) on ${ctx.report.description}`);
        const rows = 24;
        const per = 256 * p * p;
        const got = await ctx.readF32(output.buffer, rows * per);
        const want = multiScaleRoiAlignRef(features, scales, { channels: 256, pooled: p, samplingRatio: 2 }, boxesData, rows);
        assertClose(got, want, roiAlignTolerance, `first ${rows} rows`);
      } finally {
        rec.destroy();
      }
    }
  } finally {
    inputs.destroy();
  }
});
roi.test('rejects an output over the binding limit and mismatched level sizes, naming the fix', (ctx) => {
  const op = new RoiAlignMultiLevel(ctx, { channels: 256, outputSize: 14, maxRois: 1000 });
  const b = ctx.createBuffer('b', 64);
  // Tensors that only carry shapes: both checks throw before anything is bound or allocated.
  const t = (shape: number[]): Tensor => ({ buffer: b, shape, label: `t[${shape.join(', ')}]` });
  const levels = fpnSizes(800, 1216).map((s) => ({ h: s.height, w: s.width }));
  const rec = new Recorder(ctx, 'roiAlign-rejects');
  try {
    const big = levels.map((l) => t([256, l.h, l.w]));
    assert.throws(() => op.record(rec, { features: big, boxes: t([1000, 4]), count: t([1]), imageHeight: 800 }), /maxRois/);
    const small = new RoiAlignMultiLevel(ctx, { channels: 8, outputSize: 7, maxRois: 4 });
    const wrong = [levels[0], levels[0], levels[2], levels[3]].map((l) => t([8, l.h, l.w])); // P3 the size of P2
    assert.throws(() => small.record(rec, { features: wrong, boxes: t([4, 4]), count: t([1]), imageHeight: 800 }), /consecutive powers of two/);
    assert.is(rec.dispatches.length, 0, 'nothing recorded');
  } finally {
    rec.destroy();
  }
});
roi.run();

// ---- paste_masks_in_image -------------------------------------------------------------------

/** Boxes in original-image coordinates: awkward ones first, then random. */
function pasteBoxList(seed: number, H: number, W: number, n: number): Float32Array {
  const r = rng(seed);
  const boxes: number[][] = [
    [0, 0, W, H], // whole image
    [-0.3 * W, -0.2 * H, 1.4 * W, 1.3 * H], // larger than the image
    [10, 10, 37.5, 37.5], // expands to exactly 30 x 30: the resize is a copy
    [5.2, 6.1, 5.6, 6.5], // tiny (w, h < 1)
    [20, 8, 20.4, 60], // w < 1
    [W - 12, H - 9, W + 25, H + 14], // partly outside, bottom-right
    [-15, -12, 20, 18], // partly outside, top-left
    [W - 0.5, 3, W, 30], // on the right edge
    [W + 20, 5, W + 60, 40], // entirely outside: an empty mask
    [3, 2, 9, 40], // narrow: resized mask smaller than 30 (downsampling)
  ];
  while (boxes.length < n) {
    const s = 2 ** (r() * 8); // 1 .. 256 px
    const w = s * (0.3 + r());
    const h = s * (0.3 + r());
    const x = r() * (W + 20) - 10 - w / 2;
    const y = r() * (H + 20) - 10 - h / 2;
    boxes.push([x, y, x + w, y + h]);
  }
  return new Float32Array(boxes.slice(0, n).flat());
}

/** Masks of random probabilities, with every third mask at or within 3 ulps of 0.5. */
function pasteMaskProbs(seed: number, n: number, M: number, adversarial: boolean): Float32Array {
  const probs = uniform(seed, n * M * M, 0, 1);
  const r = rng(seed + 1);
  for (let k = 0; adversarial && k < n; k += 3)
    for (let i = k * M * M; i < (k + 1) * M * M; i++) probs[i] = k % 2 ? 0.5 : 0.5 + Math.round(r() * 6 - 3) * 2 ** -24;
  return probs;
}

const popcount = (v: number) => {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
};

interface PasteCase {
  name: string;
  H: number;
  W: number;
  maxN: number;
  count: number;
  M?: number;
  seed: number;
  boxes?: Float32Array;
  /** Every third mask at or within 3 ulps of 0.5 (default true). */
  adversarial?: boolean;
}

async function runPasteCase(ctx: GpuContext, c: PasteCase): Promise<void> {
  const M = c.M ?? 28;
  const masksData = pasteMaskProbs(c.seed, c.maxN, M, c.adversarial ?? true);
  const boxesData = new Float32Array(c.maxN * 4).fill(Number.NaN); // rows past the count are garbage
  boxesData.set((c.boxes ?? pasteBoxList(c.seed + 2, c.H, c.W, c.count)).subarray(0, 4 * c.count));
  const rowWords = maskRowWords(c.W);
  const words = c.maxN * c.H * rowWords;
  const rec = new Recorder(ctx, 'pasteMasks-test');
  let got: Uint32Array;
  let pasteBoxes: ReturnType<typeof decodePasteBoxes>;
  let ms: number;
  try {
    const op = rec.keep(new PasteMasks(ctx, { maxMasks: c.maxN, maskSize: M }));
    const masks = rec.input('masks', masksData, [c.maxN, M, M]);
    const boxes = rec.input('boxes', boxesData, [c.maxN, 4]);
    const count = rec.input('count', new Uint32Array([c.count]), [1]);
    const bits = op.record(rec, { probs: masks, boxes, count }, { height: c.H, width: c.W });
    assert.equal(bits.shape, [c.maxN, c.H, rowWords], 'output shape');
    ctx.write(bits.buffer, new Uint32Array(words).fill(0xdeadbeef)); // stale data must be overwritten (queued before the submit)
    rec.submit();
    await ctx.device.queue.onSubmittedWorkDone();
    const t0 = performance.now();
    rec.submit();
    await ctx.device.queue.onSubmittedWorkDone();
    ms = performance.now() - t0;
    got = await ctx.readU32(bits.buffer, words);
    pasteBoxes = decodePasteBoxes(await ctx.readU32(op.pasteBoxes, c.maxN * PASTE_BOX_WORDS), c.maxN);
  } finally {
    rec.destroy();
  }

  const ref = pasteMasksRef(masksData, boxesData, c.count, M, c.H, c.W);
  const want = new Uint32Array(words);
  want.set(packMaskBits(ref.probs, c.count, c.H, c.W));
  let mismatches = 0;
  let worstIou = 1;
  const perMask = c.H * rowWords;
  for (let n = 0; n < c.maxN; n++) {
    let inter = 0;
    let union = 0;
    for (let i = n * perMask; i < (n + 1) * perMask; i++) {
      mismatches += popcount(got[i] ^ want[i]);
      inter += popcount(got[i] & want[i]);
      union += popcount(got[i] | want[i]);
    }
    if (union) worstIou = Math.min(worstIou, inter / union);
  }
  for (let n = 0; n < c.count; n++) {
    const b = pasteBoxes[n];
    assert.equal([b.x0, b.y0, b.x1, b.y1], expandBoxRef(boxesData.subarray(4 * n, 4 * n + 4), M, 1), `expanded box ${n}`);
  }
  let nearHalf = 0;
  for (const p of ref.probs) if (Math.abs(p - 0.5) <= 2 ** -22) nearHalf++;
  const pixels = c.maxN * c.H * c.W;
  console.log(
    `    ${c.name}: ${mismatches} of ${pixels} pixel bits differ (${(100 * (1 - mismatches / pixels)).toFixed(4)}% identical, worst mask IoU ${worstIou.toFixed(6)}), ` +
      `${nearHalf} reference pixels within 4 ulps of 0.5; ${ms.toFixed(1)} ms`,
  );
  assert.is(mismatches, 0, `${c.name}: bit mismatches against the reference`);
}

const paste = gpuSuite('paste_masks_in_image');
paste.test('odd width 131 (rows end mid-word), awkward + random boxes, 30 of 36 detections', (ctx) =>
  runPasteCase(ctx, { name: '97x131', H: 97, W: 131, maxN: 36, count: 30, seed: 900 }),
);
paste.test('width 64 (whole words) and width 17 (one partial word), 1 row image', async (ctx) => {
  await runPasteCase(ctx, { name: '45x64', H: 45, W: 64, maxN: 16, count: 16, seed: 910 });
  await runPasteCase(ctx, { name: '33x17', H: 33, W: 17, maxN: 12, count: 11, seed: 920 });
  await runPasteCase(ctx, { name: '1x40', H: 1, W: 40, maxN: 4, count: 3, seed: 930, boxes: new Float32Array([0, 0, 40, 1, -3, -0.4, 12, 0.3, 5, 0, 5.5, 0.2]) });
});
paste.test('mask size 14 with the same rules (M is a parameter)', (ctx) => runPasteCase(ctx, { name: 'M=14', H: 60, W: 75, maxN: 10, count: 9, M: 14, seed: 940 }));
paste.test('zero detections: every word is zero', (ctx) => runPasteCase(ctx, { name: 'count 0', H: 20, W: 70, maxN: 5, count: 0, seed: 950 }));
paste.test('100 detections at 800x1333, adversarial masks', (ctx) => runPasteCase(ctx, { name: '100 x 800x1333 adversarial', H: 800, W: 1333, maxN: 100, count: 100, seed: 960 }));
paste.test('timing: 100 detections at 800x1333, random probabilities', (ctx) =>
  runPasteCase(ctx, { name: '100 x 800x1333 random', H: 800, W: 1333, maxN: 100, count: 100, seed: 970, adversarial: false }),
);
paste.run();
