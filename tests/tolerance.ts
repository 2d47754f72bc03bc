// Named tolerances and a comparison that says where and by how much a result is off.
// |got - want| <= abs + rel * |want| elementwise.
// Detection gates (box IoU, score, mask IoU) are eval/match.ts's DetectionGate.

import type { DetectionGate } from '../eval/match.ts';

export interface Tolerance {
  name: string;
  abs: number;
  rel: number;
}

/** Element-wise ops with no accumulation (pooling, nearest upsample, copies). */
export const exact: Tolerance = { name: 'exact', abs: 0, rel: 0 };
/** One or two float32 roundings (sigmoid, a single add). */
export const strict: Tolerance = { name: 'strict', abs: 1e-5, rel: 1e-4 };
/**
 * Bilinear resampling: whether scale * (d + 0.5) - 0.5 is fused (torch's CPU build) or not moves
 * the source coordinate by 1 ulp (up to 1.2e-4 at 1333 px), which moves the interpolation weight
 * by as much, times the difference of neighbouring (normalised, |v| < 2.7) pixels.
 */
export const resample: Tolerance = { name: 'resample', abs: 2e-4, rel: 1e-4 };
/** float32 accumulation of long dot products (conv, matmul, linear) against a float64 reference. */
export const f32Accum: Tolerance = { name: 'f32Accum', abs: 1e-4, rel: 1e-3 };

// The golden tests against torchvision 0.14.1 (tests/golden-*.test.ts), set from what they measure
// on lavapipe with a stated margin, so that they hold the engine to the accuracy the README claims.

/**
 * The FPN maps after ~50 float32 convs (tests/golden-backbone.test.ts): rounding differences
 * (accumulation order, BN folded into the weights, the resize's FMA) grow layer by layer. Measured
 * worst |error| 3.6e-5 (fpn.0 at a value of 1.5; the maps reach |x| = 21), 29 % of this tolerance:
 * a 3.4x margin.
 */
export const fpnFeatures: Tolerance = { name: 'fpnFeatures', abs: 1e-4, rel: 1e-4 };

/**
 * Detections box for box against torchvision (tests/golden-maskrcnn.test.ts; labels and count
 * exact). Measured on the 3 golden images (47 detections): worst box IoU 0.999939 (corners within
 * 2.5e-4 px), worst |score error| 3.5e-5 (at a score of 0.30), every mask IoU exactly 1. Margin:
 * 3.3x on the box IoU loss (2e-4 vs 6.1e-5), 2.9x on the score error; masks must stay pixel-exact.
 */
export const goldenDetections: DetectionGate = { name: 'goldenDetections', minBoxIou: 0.9998, maxScoreError: 1e-4, minMaskIou: 1 };

/**
 * The golden model on JPEG copies of the golden images (tests/jpeg-golden.test.ts; decoding is
 * byte-identical to Pillow, so what remains is the engine's float32 rounding on new inputs).
 * Measured on 6 JPEGs (97 detections): worst box IoU 0.999968, worst |score error| 8.2e-5, worst
 * mask IoU 0.996 (one mask of progressive_420: a few pixels whose pasted probability is within
 * rounding of 0.5). Margin: 2.4x on the score error, 6x on the box IoU loss; masks >= 0.99.
 */
export const jpegGoldenDetections: DetectionGate = { name: 'jpegGoldenDetections', minBoxIou: 0.9998, maxScoreError: 2e-4, minMaskIou: 0.99 };

export interface Comparison {
  ok: boolean;
  worstAbs: number;
  worstIndex: number;
  /** Largest |error| / (abs + rel * |want|): how much of the tolerance was used (1 = all of it). */
  worstFraction: number;
  mismatches: number;
  report: string;
}

export function compare(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance, what = 'result'): Comparison {
  if (got.length !== want.length) {
    return { ok: false, worstAbs: Infinity, worstIndex: -1, worstFraction: Infinity, mismatches: Math.max(got.length, want.length), report: `${what}: length ${got.length}, expected ${want.length}` };
  }
  let worstAbs = 0;
  let worstIndex = -1;
  let worstFraction = 0;
  const bad: number[] = [];
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    const w = want[i];
    const diff = Math.abs(g - w);
    const err = g === w || (Number.isNaN(g) && Number.isNaN(w)) ? 0 : Number.isNaN(diff) ? Infinity : diff;
    const allowed = tol.abs + tol.rel * Math.abs(w);
    const fine = err <= allowed;
    if (err > 0) worstFraction = Math.max(worstFraction, allowed > 0 ? err / allowed : Infinity);
    if (err > worstAbs) {
      worstAbs = err;
      worstIndex = i;
    }
    if (!fine) bad.push(i);
  }
  const first = bad
    .slice(0, 5)
    .map((i) => `[${i}] got ${got[i]} want ${want[i]}`)
    .join('; ');
  const report =
    `${what}: ${got.length} values, worst |error| ${worstAbs.toExponential(3)}` +
    (worstIndex >= 0 ? ` at [${worstIndex}]` : '') +
    ` (tolerance ${tol.name}: ${tol.abs} + ${tol.rel}*|want|, ${Number.isFinite(worstFraction) ? `${(100 * worstFraction).toFixed(0)} %` : 'beyond it'} used)` +
    (bad.length ? `; ${bad.length} mismatches, first: ${first}` : '');
  return { ok: bad.length === 0, worstAbs, worstIndex, worstFraction, mismatches: bad.length, report };
}

/** Throws with the report when out of tolerance; otherwise prints the worst error it saw. */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance, what = 'result'): Comparison {
  const c = compare(got, want, tol, what);
  if (!c.ok) throw new Error(c.report);
  console.log(`    ${c.report}`);
  return c;
}

/**
 * Winograd F(m x m, 3 x 3) convolution against the float64 direct conv (tests/winograd.test.ts):
 * |got - want| <= kappa * (cin + 8) * 2^-24 * S per output, S = sum |w x| + |bias| (+ |residual|)
 * (tests/reference/winograd.ts). Why this form: the float32 sum over the cin input channels at
 * each of the A*A transform positions is the only error that grows with the layer (cin terms, ~
 * cin ulp at worst); the transforms add a fixed number of roundings (the + 8), and each rounding
 * acts on the transformed values, whose magnitudes exceed S by the matrices' norms: at most
 * (|A^T|_inf |G|_inf |B^T|_inf)^2 = (3 * 1.5 * 2)^2 = 81 for F(2,3) and (19 * 1 * 10)^2 = 36100 for
 * F(4,3) in the worst case; on random data the measured worst is far below (printed by the test).
 * kappa is set from the measured worst with a margin of 4x: on tests/winograd.test.ts's shapes the
 * worst error was 0.44 (cin + 8) ulp of S for F(2,3) and 5.8 for F(4,3) (13x larger: its points
 * +-2 and 1/24 weights), both at 5 input channels with padding 2, where few terms average out.
 */
export const WINOGRAD_TOLERANCE: Record<2 | 4, { name: string; kappa: number }> = {
  2: { name: 'winogradF2', kappa: 2 },
  4: { name: 'winogradF4', kappa: 24 },
};

/** Checks a Winograd result under WINOGRAD_TOLERANCE; returns the worst fraction of the bound used. */
export function checkWinograd(got: ArrayLike<number>, want: ArrayLike<number>, scale: ArrayLike<number>, m: 2 | 4, cin: number, what: string): number {
  const { name, kappa } = WINOGRAD_TOLERANCE[m];
  if (got.length !== want.length || got.length !== scale.length) throw new Error(`${what}: ${got.length} values, expected ${want.length}`);
  const unit = kappa * (cin + 8) * 2 ** -24;
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    const fraction = Number.isNaN(err) ? Infinity : err / (unit * scale[i] || Number.MIN_VALUE);
    if (fraction > worst) {
      worst = fraction;
      worstAt = i;
    }
  }
  if (worst > 1) {
    throw new Error(`${what}: ${name} exceeded at ${worstAt}: got ${got[worstAt]}, float64 ${want[worstAt]}, |error| ${Math.abs(got[worstAt] - want[worstAt]).toExponential(2)} > ${(unit * scale[worstAt]).toExponential(2)} (${(worst * 100).toFixed(0)} % of the bound)`);
  }
  return worst;
}
