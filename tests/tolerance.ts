// Named tolerances and a comparison that says where and by how much a result is off.
// |got - want| <= abs + rel * |want| elementwise.

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

export interface Comparison {
  ok: boolean;
  worstAbs: number;
  worstIndex: number;
  mismatches: number;
  report: string;
}

export function compare(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance, what = 'result'): Comparison {
  if (got.length !== want.length) {
    return { ok: false, worstAbs: Infinity, worstIndex: -1, mismatches: Math.max(got.length, want.length), report: `${what}: length ${got.length}, expected ${want.length}` };
  }
  let worstAbs = 0;
  let worstIndex = -1;
  const bad: number[] = [];
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    const w = want[i];
    const diff = Math.abs(g - w);
    const err = g === w || (Number.isNaN(g) && Number.isNaN(w)) ? 0 : Number.isNaN(diff) ? Infinity : diff;
    const fine = err <= tol.abs + tol.rel * Math.abs(w);
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
    ` (tolerance ${tol.name}: ${tol.abs} + ${tol.rel}*|want|)` +
    (bad.length ? `; ${bad.length} mismatches, first: ${first}` : '');
  return { ok: bad.length === 0, worstAbs, worstIndex, mismatches: bad.length, report };
}

/** Throws with the report when out of tolerance; otherwise prints the worst error it saw. */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance, what = 'result'): Comparison {
  const c = compare(got, want, tol, what);
  if (!c.ok) throw new Error(c.report);
  console.log(`    ${c.report}`);
  return c;
}
