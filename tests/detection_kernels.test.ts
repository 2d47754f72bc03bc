// The six detection post-processing kernels on the GPU against their CPU references
// (tests/reference/rpn.ts, roi_heads.ts, box_coder.ts): rpn_scores, rpn_decode, gather_boxes,
// box_postprocess, detections, mask_logits. Odd counts (1, 37, 65, 997, 1001), empty inputs
// (k = 0 levels, kept counts of 0), boxes at and beyond the image border, zero-area and tiny
// boxes, huge deltas (the dw/dh clip), padding rows past the live count, k below h * w * A,
// several RPN levels with offsets into one candidate buffer, 2 and 91 classes. Pooled outputs
// are pre-filled with NaN garbage (a released dirty buffer of the same size, which the pool
// hands out next) so every row the kernel must write is checked to be written.
// Integer outputs (valid flags, groups, labels, gathered rows, untouched rows) compare exactly;
// float outputs computed with exp compare with a named tolerance (below). The references are
// also checked on a few hand-computed cases (CPU only), so they are not only the shaders restated.

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import type { GpuContext } from '../engine/gpu.ts';
import type { Tensor } from '../engine/planner.ts';
import { Recorder } from '../engine/recorder.ts';
import { recordBoxPostprocess } from '../engine/kernels/boxPostprocess.ts';
import { recordDetections } from '../engine/kernels/detections.ts';
import { recordGatherBoxes } from '../engine/kernels/gatherBoxes.ts';
import { MaskLogits } from '../engine/kernels/maskLogits.ts';
import { recordRpnDecode, type Candidates } from '../engine/kernels/rpnDecode.ts';
import { recordRpnScores } from '../engine/kernels/rpnScores.ts';
import { cellAnchors } from '../engine/maskrcnn/anchors.ts';
import { gpuSuite } from './harness.ts';
import { normal, rng, uniform } from './random.ts';
import { type CandidatesRef, DECISION_GUARD_ABS, DECISION_GUARD_REL, decodeClipRef, emptyCandidatesRef, SCORE_GUARD, sizeDecision } from './reference/box_coder.ts';
import { boxPostprocessRef, detectionsRef, maskLogitsRef, softmaxF32 } from './reference/roi_heads.ts';
import { gatherBoxesRef, rpnDecodeRef, rpnScoresRef, type RpnLevelRef, sigmoidF32 } from './reference/rpn.ts';
import { assertClose, exact, strict, type Tolerance } from './tolerance.ts';

/**
 * Decoded box corners, allowed error = abs + rel * (|pred_ctr| + |0.5 * pred_size|), the
 * magnitude of the float32 terms the corner is the difference or sum of (not |corner|: a corner
 * near 0 can come from two large terms). The shader does the reference's float32 operations,
 * but WGSL's exp is not correctly rounded (3 + 2|x| ulp allowed), its f32 division (the box
 * head's delta / weight) may be off by 2.5 ulp, and a compiler may fuse dx * w + ctr into an
 * FMA: each moves a corner by a few ulps of those terms. rel 1e-6 is ~16 ulps (lavapipe: <= 2).
 * The reference's guard band for the size filter is built from the same numbers, so corners
 * within this tolerance cannot flip a decision outside the band.
 */
const decodeTolerance: Tolerance = { name: 'decode', abs: DECISION_GUARD_ABS, rel: DECISION_GUARD_REL };
/**
 * Sort keys: sigmoid(logit) (RPN) or a softmax score (box head), values <= 1, float32 with exp
 * (a few ulps, ~1e-7): held to the reference's score guard band (1e-6), as the score filter is.
 */
const keyTolerance: Tolerance = { name: 'scoreKey', abs: SCORE_GUARD, rel: 0 };
/** Mask probabilities: one exp and a division against a float64 sigmoid: `strict`. */
const maskTolerance = strict;

const NAN_BITS = 0x7fc00000;

// ---- helpers ------------------------------------------------------------------------------

/**
 * Leaves a pooled buffer of `shape` filled with NaN bits in the pool's free list, so the next
 * rec.tensor of that size is handed stale data (the pool takes the best fit).
 */
function dirtyPooled(rec: Recorder, ...shapes: number[][]): GPUBuffer[] {
  const ts = shapes.map((s, i) => rec.tensor(`dirty${i}`, s));
  for (const t of ts) rec.ctx.write(t.buffer, new Uint32Array(t.shape.reduce((a, b) => a * b, 1)).fill(NAN_BITS));
  rec.release(...ts);
  return ts.map((t) => t.buffer);
}

function noteReuse(what: string, dirty: GPUBuffer[], outputs: Tensor[]): void {
  const reused = outputs.filter((t) => dirty.includes(t.buffer)).length;
  if (reused < outputs.length) console.log(`    note: ${what}: only ${reused} of ${outputs.length} outputs got a pre-dirtied pooled buffer`);
}

/** `got` against `want` with allowed error abs + rel * scale[i]; reports the first mismatches and the worst error. */
function assertCloseScaled(got: ArrayLike<number>, want: ArrayLike<number>, scale: ArrayLike<number>, tol: Tolerance, what: string): number {
  assert.is(got.length, want.length, `${what}: length`);
  let worst = 0;
  let worstAt = -1;
  let worstFraction = 0;
  const bad: number[] = [];
  for (let i = 0; i < got.length; i++) {
    const err = got[i] === want[i] ? 0 : Math.abs(got[i] - want[i]);
    const allowed = tol.abs + tol.rel * scale[i];
    if (!(err <= allowed)) bad.push(i);
    if (!(err <= worst)) {
      worst = err;
      worstAt = i;
    }
    if (err > 0) worstFraction = Math.max(worstFraction, err / allowed);
  }
  const report =
    `${what}: ${got.length} values, worst |error| ${worst.toExponential(3)}` +
    (worstAt >= 0 ? ` at [${worstAt}] (term magnitude ${Number(scale[worstAt]).toPrecision(4)})` : '') +
    ` (tolerance ${tol.name}: ${tol.abs} + ${tol.rel}*terms, ${(100 * worstFraction).toFixed(0)} % used)`;
  if (bad.length) {
    const first = bad.slice(0, 5).map((i) => `[${i}] got ${got[i]} want ${want[i]}`).join('; ');
    throw new Error(`${report}; ${bad.length} mismatches, first: ${first}`);
  }
  console.log(`    ${report}`);
  return worst;
}

/** `k` distinct integers of [0, n) in random order (partial Fisher-Yates). */
function distinct(seed: number, n: number, k: number): Uint32Array {
  const r = rng(seed);
  const all = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(r() * (n - i));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, k);
}

/** Rows `rows` (each `width` wide) of `a`. */
function rowsOf(a: ArrayLike<number>, rows: number[], width = 1): number[] {
  const out: number[] = [];
  for (const r of rows) for (let j = 0; j < width; j++) out.push(a[r * width + j]);
  return out;
}

function candidateInputs(rec: Recorder, label: string, c: { boxes: Float32Array; keys: Float32Array; group: Uint32Array; valid: Uint32Array }): Candidates {
  const n = c.keys.length;
  return {
    boxes: rec.input(`${label}.boxes`, c.boxes, [n, 4]),
    keys: rec.input(`${label}.keys`, c.keys, [n]),
    group: rec.input(`${label}.group`, c.group, [n]),
    valid: rec.input(`${label}.valid`, c.valid, [n]),
  };
}

async function readCandidates(ctx: GpuContext, c: Candidates, n: number) {
  return {
    boxes: await ctx.readF32(c.boxes.buffer, 4 * n),
    keys: await ctx.readF32(c.keys.buffer, n),
    group: await ctx.readU32(c.group.buffer, n),
    valid: await ctx.readU32(c.valid.buffer, n),
  };
}

/** Compares every written row of the candidates; returns the worst box error. */
function compareCandidates(got: Awaited<ReturnType<typeof readCandidates>>, want: CandidatesRef, rows: number[], what: string): number {
  const nearTies = rows.filter((r) => want.nearTie[r]);
  assert.is(nearTies.length, 0, `${what}: the test data has rows whose filter decision is within the guard band of its threshold (rows ${nearTies.slice(0, 8).join(', ')}): pick other data`);
  assertClose(rowsOf(got.valid, rows), rowsOf(want.valid, rows), exact, `${what} valid`);
  assertClose(rowsOf(got.group, rows), rowsOf(want.group, rows), exact, `${what} group`);
  assertClose(rowsOf(got.keys, rows), rowsOf(want.keys, rows), keyTolerance, `${what} keys`);
  return assertCloseScaled(rowsOf(got.boxes, rows, 4), rowsOf(want.boxes, rows, 4), rowsOf(want.scale, rows, 4), decodeTolerance, `${what} boxes`);
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);

// ---- the references on hand-computed cases ------------------------------------------------

const refs = suite('detection references (hand-computed)');
refs('permute_and_flatten, decode_single + clip, bbox_xform_clip, remove_small_boxes, softmax, resize_boxes', () => {
  // [A=2][H=1][W=3] -> (y, x, a).
  assert.equal(Array.from(rpnScoresRef(new Float32Array([0, 1, 2, 10, 11, 12]), 2, 1, 3)), [0, 10, 1, 11, 2, 12]);
  // Anchor 10 x 20 centred at (5, 10); dx 0.1, dy -0.2, dw log 2 -> centre (6, 6), size 20 x 20,
  // corners (-4, -4, 16, 16), clipped to a 12 x 15 image.
  const d = decodeClipRef([0, 0, 10, 20], [0.1, -0.2, Math.log(2), 0], [1, 1, 1, 1], 12, 15);
  assert.equal(d.box, [0, 0, 15, 12]);
  // The same with the box head's weights (10, 10, 5, 5), in a large image: no clipping.
  assert.equal(decodeClipRef([0, 0, 10, 20], [1, -2, 5 * Math.log(2), 0], [10, 10, 5, 5], 1000, 1000).box, [0, 0, 16, 16]);
  assert.equal(decodeClipRef([100, 100, 110, 120], [1, -2, 5 * Math.log(2), 0], [10, 10, 5, 5], 1000, 1000).box, [96, 96, 116, 116]);
  // dw = 10 is clamped at log(1000 / 16): width 62.5 * 10.
  const c = decodeClipRef([1000, 0, 1010, 10], [0, 0, 10, 0], [1, 1, 1, 1], 100, 5000).box;
  assert.ok(Math.abs(c[2] - c[0] - 625) < 1e-3, `clipped dw: width ${c[2] - c[0]}`);
  // Zero width at the right border: removed, and exact (no tie possible).
  const z = decodeClipRef([1000, 0, 1010, 10], [0, 0, 0, 0], [1, 1, 1, 1], 100, 500);
  assert.equal(z.box, [500, 0, 500, 10]);
  assert.equal(sizeDecision(z, 1e-3), { pass: false, nearTie: false });
  assert.equal(sizeDecision(d, 12), { pass: true, nearTie: false });
  assert.equal(sizeDecision(d, 12.5), { pass: false, nearTie: false });
  assert.is(sigmoidF32(0), 0.5);
  const sm = softmaxF32([0, Math.log(3)], 0, 2);
  assert.ok(Math.abs(sm[0] - 0.25) < 1e-7 && Math.abs(sm[1] - 0.75) < 1e-7, `softmax ${sm}`);
  // Flatten order k * (C - 1) + (c - 1), labels 1..C-1, padding proposal never valid.
  const bp = boxPostprocessRef({ classes: 3, imageH: 100, imageW: 100, scoreThresh: 0.05, minSize: 1e-2, weights: [10, 10, 5, 5] }, [10, 10, 50, 50, 10, 10, 50, 50], 1, [0, 1, 1, 0, 1, 1], new Float32Array(24), 2);
  assert.equal(Array.from(bp.group), [1, 2, 1, 2]);
  assert.equal(Array.from(bp.valid), [1, 1, 0, 0]);
  assert.equal(Array.from(bp.boxes.subarray(0, 4)), [10, 10, 50, 50]);
  // resize_boxes by (0.5, 2), zero past the kept count.
  const det = detectionsRef({ maxDetections: 2, ratioH: 2, ratioW: 0.5 }, { boxes: [10, 20, 30, 40], keys: [0.9], group: [7] }, [0, 0], 1);
  assert.equal(Array.from(det.result), [5, 40, 15, 80, Math.fround(0.9), 7, 0, 0, 0, 0, 0, 0]);
  assert.equal(Array.from(gatherBoxesRef([1, 2, 3, 4, 5, 6, 7, 8], [1, 0], 1, 2)), [5, 6, 7, 8, 0, 0, 0, 0]);
});
refs.run();

// ---- rpn_scores ---------------------------------------------------------------------------

const s = gpuSuite('detection kernels');

async function runRpnScores(ctx: GpuContext, A: number, H: number, W: number, seed: number): Promise<void> {
  const rec = new Recorder(ctx, 'test');
  try {
    const data = normal(seed, A * H * W, 3);
    const dirty = dirtyPooled(rec, [H * W * A]);
    const scores = recordRpnScores(rec, rec.input('logits', data, [A, H, W]));
    noteReuse('rpn_scores', dirty, [scores]);
    rec.submit();
    const got = await ctx.readF32(scores.buffer, H * W * A);
    assertClose(got, rpnScoresRef(data, A, H, W), exact, `rpn_scores A=${A} ${H}x${W}`);
  } finally {
    rec.destroy();
  }
}

s.test('rpn_scores: (y, x, a) permutation, A=3 13x17, A=1 1x1, A=5 37x65, A=3 1x1001 (exact)', async (ctx) => {
  await runRpnScores(ctx, 3, 13, 17, 1);
  await runRpnScores(ctx, 1, 1, 1, 2);
  await runRpnScores(ctx, 5, 37, 65, 3);
  await runRpnScores(ctx, 3, 1, 1001, 4);
});

s.test('rpn_scores: a count past 65535 workgroups of 64 (2-D grid with row pitch)', async (ctx) => {
  const max = ctx.device.limits.maxComputeWorkgroupsPerDimension;
  if (max > 65535) {
    console.log(`    skipped: this adapter allows ${max} workgroups per dimension`);
    return;
  }
  // 3 x 1031 x 1357 = 4 197 501 > 65535 * 64 = 4 194 240.
  await runRpnScores(ctx, 3, 1031, 1357, 5);
});

// ---- rpn_decode ---------------------------------------------------------------------------

interface LevelCase {
  anchors: number;
  h: number;
  w: number;
  k: number;
  cell: Float32Array;
  minSize: number;
  scoreThresh: number;
  /** Fraction of delta values replaced by huge ones (|v| in 8..60: the dw/dh clip, boxes pushed off the image). */
  huge: number;
  /**
   * Fraction of anchors whose dw or dh is set to -7..-8 or -13.5..-14.5: sides of about 1e-3 or
   * 1e-6 times the anchor's, tiny boxes on both sides of min_size 1e-3 but outside the guard band.
   */
  tiny: number;
}

async function runRpnDecode(ctx: GpuContext, name: string, image: { h: number; w: number; paddedH: number; paddedW: number }, levels: LevelCase[], seed: number): Promise<void> {
  const rec = new Recorder(ctx, 'test');
  try {
    // Offsets with gaps of 2 rows before, between and after the levels: those rows must stay untouched.
    const gap = 2;
    const offsets: number[] = [];
    let total = gap;
    for (const l of levels) {
      offsets.push(total);
      total += l.k + gap;
    }
    const sentinel = {
      boxes: new Float32Array(4 * total).fill(-777.25),
      keys: new Float32Array(total).fill(12345.5),
      group: new Uint32Array(total).fill(0xdead),
      valid: new Uint32Array(total).fill(7),
    };
    const cand = candidateInputs(rec, 'cand', sentinel);
    const want = emptyCandidatesRef(total);
    want.boxes.set(sentinel.boxes);
    want.keys.set(sentinel.keys);
    want.group.set(sentinel.group);
    want.valid.set(sentinel.valid);

    const written: number[] = [];
    levels.forEach((l, li) => {
      const r = rng(seed + 100 * li);
      const n = l.h * l.w * l.anchors;
      const topIndex = distinct(seed + 100 * li + 1, n, l.k);
      const topLogits = normal(seed + 100 * li + 2, l.k, 2.5).sort().reverse(); // descending, as the top-k gives them
      const deltas = normal(seed + 100 * li + 3, 4 * n, 0.6);
      for (let i = 0; i < deltas.length; i++) if (r() < l.huge) deltas[i] = (r() < 0.5 ? -1 : 1) * (8 + 52 * r());
      for (let i = 0; i < n; i++) {
        if (r() >= l.tiny) continue;
        const a = i % l.anchors;
        const pixel = Math.floor(i / l.anchors);
        deltas[(4 * a + 2 + (r() < 0.5 ? 0 : 1)) * l.h * l.w + pixel] = r() < 0.5 ? -7 - r() : -13.5 - r();
      }
      const p: RpnLevelRef = {
        k: l.k,
        offset: offsets[li],
        level: li,
        anchors: l.anchors,
        h: l.h,
        w: l.w,
        strideH: Math.floor(image.paddedH / l.h), // levelStrides: padded size // grid size
        strideW: Math.floor(image.paddedW / l.w),
        imageH: image.h,
        imageW: image.w,
        minSize: l.minSize,
        scoreThresh: l.scoreThresh,
      };
      const io = {
        topLogits: rec.input(`top_logits${li}`, l.k ? topLogits : new Float32Array(1), [Math.max(1, l.k)]),
        topIndex: rec.input(`top_index${li}`, l.k ? topIndex : new Uint32Array(1), [Math.max(1, l.k)]),
        deltas: rec.input(`deltas${li}`, deltas, [4 * l.anchors, l.h, l.w]),
        cell: rec.input(`cell${li}`, l.cell, [l.anchors, 4]),
      };
      recordRpnDecode(rec, p, io, cand);
      rpnDecodeRef(p, topLogits, topIndex, deltas, l.cell, want);
      written.push(...range(p.offset, p.offset + p.k));
    });
    rec.submit();
    const got = await readCandidates(ctx, cand, total);

    const untouched = range(0, total).filter((i) => !written.includes(i));
    assertClose(rowsOf(got.boxes, untouched, 4), rowsOf(sentinel.boxes, untouched, 4), exact, `${name}: ${untouched.length} rows outside the levels, boxes`);
    assertClose(rowsOf(got.keys, untouched), rowsOf(sentinel.keys, untouched), exact, `${name}: rows outside, keys`);
    assertClose(rowsOf(got.group, untouched), rowsOf(sentinel.group, untouched), exact, `${name}: rows outside, group`);
    assertClose(rowsOf(got.valid, untouched), rowsOf(sentinel.valid, untouched), exact, `${name}: rows outside, valid`);
    compareCandidates(got, want, written, name);

    // What the data exercised: both filters, the border clip, the dw/dh clip.
    let valid = 0;
    let small = 0;
    let lowScore = 0;
    let clipped = 0;
    let offLevel = 0;
    levels.forEach((l, li) => {
      for (let r = offsets[li]; r < offsets[li] + l.k; r++) {
        const [x1, y1, x2, y2] = want.boxes.subarray(4 * r, 4 * r + 4);
        const isSmall = Math.fround(x2 - x1) < Math.fround(l.minSize) || Math.fround(y2 - y1) < Math.fround(l.minSize);
        if (want.valid[r]) valid++;
        else if (isSmall) small++;
        else lowScore++;
        if (x1 === 0 || y1 === 0 || x2 === image.w || y2 === image.h) clipped++;
        if (x1 === x2 || y1 === y2) offLevel++;
      }
    });
    console.log(`    ${name}: ${written.length} rows: ${valid} valid, ${small} too small (${offLevel} of zero size), ${lowScore} below the score threshold; ${clipped} touch the border`);
    if (written.length > 100) assert.ok(valid > 0 && small > 0 && clipped > 0, `${name}: the data exercises kept, size-filtered and clipped boxes`);
  } finally {
    rec.destroy();
  }
}

s.test('rpn_decode: 5 levels into one candidate buffer (k < h*w*A, k = h*w*A, k = 1, k = 0, A = 5), gaps untouched', (ctx) =>
  runRpnDecode(
    ctx,
    'rpn_decode 5 levels',
    { h: 100, w: 131, paddedH: 104, paddedW: 136 },
    [
      { anchors: 3, h: 13, w: 17, k: 65, cell: cellAnchors(32), minSize: 1e-3, scoreThresh: 0, huge: 0.1, tiny: 0.15 },
      { anchors: 3, h: 7, w: 9, k: 189, cell: cellAnchors(64), minSize: 2.5, scoreThresh: 0.4, huge: 0.05, tiny: 0.05 },
      { anchors: 1, h: 1, w: 1, k: 1, cell: new Float32Array([-50, -40, 50, 40]), minSize: 1e-3, scoreThresh: 0, huge: 0, tiny: 0 },
      { anchors: 3, h: 4, w: 5, k: 0, cell: cellAnchors(256), minSize: 1e-3, scoreThresh: 0, huge: 0, tiny: 0 },
      { anchors: 5, h: 5, w: 3, k: 37, cell: cellAnchors(128, [0.25, 0.5, 1, 2, 4]), minSize: 1e-3, scoreThresh: 0.2, huge: 0.1, tiny: 0.1 },
    ],
    40,
  ),
);

s.test('rpn_decode: k = 1001 of 50x77x3 at stride 4, realistic P2 (odd image 197x305, anchors past the border)', (ctx) =>
  runRpnDecode(
    ctx,
    'rpn_decode k=1001',
    { h: 197, w: 305, paddedH: 200, paddedW: 308 },
    [{ anchors: 3, h: 50, w: 77, k: 1001, cell: cellAnchors(32), minSize: 1e-3, scoreThresh: 0, huge: 0.03, tiny: 0.1 }],
    60,
  ),
);

// ---- gather_boxes -------------------------------------------------------------------------

s.test('gather_boxes: kept counts 1001, 1000, 37, 1 and 0 of 1001 rows from 2550 candidates (exact, zero past the count)', async (ctx) => {
  const nCand = 2550;
  const candBoxes = uniform(70, 4 * nCand, -50, 1400);
  for (const [maxBoxes, count, seed] of [[1001, 1001, 71], [1001, 1000, 72], [1001, 37, 73], [1, 1, 74], [65, 0, 75]]) {
    const rec = new Recorder(ctx, 'test');
    try {
      const kept = distinct(seed, nCand, maxBoxes);
      const dirty = dirtyPooled(rec, [maxBoxes, 4]);
      const boxes = recordGatherBoxes(rec, maxBoxes, {
        candBoxes: rec.input('cand_boxes', candBoxes, [nCand, 4]),
        kept: rec.input('kept', kept, [maxBoxes]),
        keptCount: rec.input('kept_count', new Uint32Array([count]), [1]),
      });
      noteReuse('gather_boxes', dirty, [boxes]);
      rec.submit();
      const got = await ctx.readF32(boxes.buffer, 4 * maxBoxes);
      assertClose(got, gatherBoxesRef(candBoxes, kept, count, maxBoxes), exact, `gather_boxes ${count} of ${maxBoxes}`);
    } finally {
      rec.destroy();
    }
  }
});

// ---- box_postprocess ----------------------------------------------------------------------

/** Proposals (resized coordinates): awkward ones first, then random; rows past `live` random too (padding must be ignored, not just tiny). */
function proposalBoxes(seed: number, n: number, H: number, W: number): Float32Array {
  const r = rng(seed);
  const boxes: number[][] = [
    [0, 0, W, H], // whole image
    [100, 50, 100, 200], // zero width
    [30, 70, 90, 70], // zero height
    [10.3, 12.7, 10.301, 12.705], // tiny
    [W - 40, H - 30, W, H], // at the bottom-right border
    [W - 20, H - 15, W + 60, H + 40], // crossing it
    [-20, -10, 30, 40], // crossing the top-left
    [W, 5, W, 50], // on the right edge, zero width
    [0.5, 0.5, 2.5, 1.25], // small
  ];
  while (boxes.length < n) {
    const s = 2 ** (r() * 9); // 1 .. 512 px
    const w = s * (0.3 + r());
    const h = s * (0.3 + r());
    const x = r() * W - w / 2;
    const y = r() * H - h / 2;
    boxes.push([Math.max(0, x), Math.max(0, y), Math.min(W, x + w), Math.min(H, y + h)]);
  }
  return new Float32Array(boxes.slice(0, n).flat());
}

interface BoxCase {
  name: string;
  maxProposals: number;
  count: number;
  classes: number;
  imageH: number;
  imageW: number;
  seed: number;
  scoreThresh?: number;
  minSize?: number;
}

async function runBoxPostprocess(ctx: GpuContext, c: BoxCase): Promise<void> {
  const K = c.maxProposals;
  const C = c.classes;
  const n = K * (C - 1);
  const r = rng(c.seed);
  const proposals = proposalBoxes(c.seed + 1, K, c.imageH, c.imageW);
  const classLogits = normal(c.seed + 2, K * C, 1.5);
  for (let k = 0; k < K; k++) {
    const boosts = 1 + Math.floor(3 * r()); // a few confident classes per proposal (background included)
    for (let b = 0; b < boosts; b++) classLogits[k * C + Math.floor(r() * C)] += 2 + 6 * r();
  }
  const boxDeltas = normal(c.seed + 3, K * C * 4, 3);
  for (let i = 0; i < boxDeltas.length; i++) if (r() < 0.03) boxDeltas[i] = (r() < 0.5 ? -1 : 1) * (100 + 100 * r()); // dw/dh past the clip or below e^-20 after / 5; dx/dy off the image after / 10
  const spec = { maxProposals: K, classes: C, imageH: c.imageH, imageW: c.imageW, scoreThresh: c.scoreThresh ?? 0.05, minSize: c.minSize ?? 1e-2, weights: [10, 10, 5, 5] as [number, number, number, number] };

  const rec = new Recorder(ctx, 'test');
  try {
    const dirty = dirtyPooled(rec, [n, 4], [n], [n], [n]);
    const cand = recordBoxPostprocess(rec, spec, {
      proposals: rec.input('proposals', proposals, [K, 4]),
      proposalCount: rec.input('proposal_count', new Uint32Array([c.count]), [1]),
      classLogits: rec.input('class_logits', classLogits, [K, C]),
      boxDeltas: rec.input('box_deltas', boxDeltas, [K, 4 * C]),
    });
    noteReuse('box_postprocess', dirty, [cand.boxes, cand.keys, cand.group, cand.valid]);
    rec.submit();
    const got = await readCandidates(ctx, cand, n);
    const want = boxPostprocessRef(spec, proposals, c.count, classLogits, boxDeltas, K);
    compareCandidates(got, want, range(0, n), c.name);
    // What the data exercised: both filters, and padding proposals that would pass both.
    let valid = 0;
    let small = 0;
    let lowScore = 0;
    let padding = 0;
    let paddingPassing = 0;
    for (let k = 0; k < K; k++) {
      const scores = softmaxF32(classLogits, k, C);
      for (let cl = 1; cl < C; cl++) {
        const i = k * (C - 1) + cl - 1;
        const [x1, y1, x2, y2] = want.boxes.subarray(4 * i, 4 * i + 4);
        const big = Math.fround(x2 - x1) >= Math.fround(spec.minSize) && Math.fround(y2 - y1) >= Math.fround(spec.minSize);
        const confident = scores[cl] > Math.fround(spec.scoreThresh);
        if (k >= c.count) {
          padding++;
          if (big && confident) paddingPassing++;
        } else if (want.valid[i]) valid++;
        else if (!confident) lowScore++;
        else small++;
      }
    }
    console.log(`    ${c.name}: ${n} rows: ${valid} valid, ${small} too small, ${lowScore} below the score threshold, ${padding} of padding proposals (${paddingPassing} would pass both filters)`);
    if (c.name.includes('997/1001')) assert.ok(valid > 0 && small > 0 && lowScore > 0 && paddingPassing > 0, `${c.name}: the data exercises every filter and the padding gate`);
  } finally {
    rec.destroy();
  }
}

s.test('box_postprocess: 91 classes, 997 live of 1001 proposal rows (awkward boxes, huge deltas, padding with live-looking data)', (ctx) =>
  runBoxPostprocess(ctx, { name: 'box_postprocess C=91 997/1001', maxProposals: 1001, count: 997, classes: 91, imageH: 479, imageW: 640, seed: 85 }),
);

s.test('box_postprocess: 2 classes with 37/37, 1/1 and 0/65 live proposals; 91 classes with 0/5 live', async (ctx) => {
  await runBoxPostprocess(ctx, { name: 'box_postprocess C=2 37/37', maxProposals: 37, count: 37, classes: 2, imageH: 97, imageW: 131, seed: 81 });
  await runBoxPostprocess(ctx, { name: 'box_postprocess C=2 1/1', maxProposals: 1, count: 1, classes: 2, imageH: 97, imageW: 131, seed: 82, scoreThresh: 0.01 });
  await runBoxPostprocess(ctx, { name: 'box_postprocess C=2 0/65', maxProposals: 65, count: 0, classes: 2, imageH: 97, imageW: 131, seed: 83 });
  await runBoxPostprocess(ctx, { name: 'box_postprocess C=91 0/5', maxProposals: 5, count: 0, classes: 91, imageH: 800, imageW: 1199, seed: 84 });
});

// ---- detections ---------------------------------------------------------------------------

s.test('detections: kept 37/100, 65/65, 1/1, 0/100; ratios < 1, > 1 and 1 (exact)', async (ctx) => {
  const nCand = 1001 * 90;
  const r = rng(90);
  const cand = {
    boxes: uniform(91, 4 * nCand, 0, 1199),
    keys: uniform(92, nCand, 0.05, 1),
    group: Uint32Array.from({ length: nCand }, () => 1 + Math.floor(r() * 90)),
    valid: new Uint32Array(nCand).fill(1),
  };
  const cases = [
    { D: 100, count: 37, orig: [427, 640], resized: [800, 1199] },
    { D: 65, count: 65, orig: [1333, 999], resized: [799, 600] },
    { D: 1, count: 1, orig: [97, 131], resized: [97, 131] },
    { D: 100, count: 0, orig: [480, 640], resized: [800, 1066] },
  ];
  for (const [ci, c] of cases.entries()) {
    const p = { maxDetections: c.D, ratioH: Math.fround(c.orig[0] / c.resized[0]), ratioW: Math.fround(c.orig[1] / c.resized[1]) };
    const kept = distinct(93 + ci, nCand, c.D);
    const rec = new Recorder(ctx, 'test');
    try {
      const dirty = dirtyPooled(rec, [c.D, 4], [c.D, 6], [c.D], [c.D, 4]);
      const out = recordDetections(rec, p, {
        candidates: candidateInputs(rec, 'cand', cand),
        kept: rec.input('kept', kept, [c.D]),
        keptCount: rec.input('kept_count', new Uint32Array([c.count]), [1]),
      });
      noteReuse('detections', dirty, [out.boxes, out.result, out.labels, out.origBoxes]);
      rec.submit();
      const want = detectionsRef(p, cand, kept, c.count);
      const what = `detections ${c.count}/${c.D}`;
      assertClose(await ctx.readF32(out.boxes.buffer, 4 * c.D), want.boxes, exact, `${what} boxes`);
      assertClose(await ctx.readF32(out.result.buffer, 6 * c.D), want.result, exact, `${what} result (orig boxes, score, label)`);
      assertClose(await ctx.readU32(out.labels.buffer, c.D), want.labels, exact, `${what} labels`);
      assertClose(await ctx.readF32(out.origBoxes.buffer, 4 * c.D), want.origBoxes, exact, `${what} orig boxes`);
    } finally {
      rec.destroy();
    }
  }
});

// ---- mask_logits -------------------------------------------------------------------------

s.test('mask_logits: the predicted class only, then the sigmoid; D=100 classes=91 M=28 C=64 with 37 kept, D=1 classes=2 M=14 C=3, 0 kept, one channel; extreme logits', async (ctx) => {
  for (const [D, classes, M, count, C, seed] of [[100, 91, 28, 37, 64, 100], [1, 2, 14, 1, 3, 101], [5, 91, 28, 0, 16, 102], [3, 2, 7, 3, 1, 103]]) {
    const pixels = M * M;
    const r = rng(seed);
    const features = normal(seed + 1, D * C * pixels, 2);
    const weight = normal(seed + 2, classes * C, 1 / Math.sqrt(C));
    const bias = normal(seed + 3, classes);
    // Some classes saturate the sigmoid both ways.
    for (let k = 0; k < classes; k++) if (r() < 0.1) bias[k] = (r() < 0.5 ? -1 : 1) * [20, 60, 100][Math.floor(r() * 3)];
    const labels = Uint32Array.from({ length: D }, () => Math.floor(r() * classes));
    labels[0] = 0;
    if (D > 1) labels[1] = classes - 1;
    const head = new MaskLogits(ctx, C, classes, weight, bias);
    const rec = new Recorder(ctx, 'test');
    try {
      const dirty = dirtyPooled(rec, [D, M, M]);
      const probs = head.record(rec, {
        features: rec.input('features', features, [D, C, M, M]),
        labels: rec.input('labels', labels, [D]),
        keptCount: rec.input('kept_count', new Uint32Array([count]), [1]),
      });
      noteReuse('mask_logits', dirty, [probs]);
      rec.submit();
      const got = await ctx.readF32(probs.buffer, D * pixels);
      const want = maskLogitsRef(features, weight, bias, labels, count, { D, C, classes, pixels });
      assertClose(got, want, maskTolerance, `mask_logits D=${D} classes=${classes} M=${M} C=${C} kept ${count}`);
      assertClose(got.subarray(count * pixels), want.subarray(count * pixels), exact, `mask_logits rows past ${count}`);
    } finally {
      rec.destroy();
      head.destroy();
    }
  }
  assert.throws(() => new MaskLogits(ctx, 4, 3, new Float32Array(11), undefined), /expected 3x4x1x1/);
});

s.run();
