// float64 references for torch's max_pool2d (ceil_mode=False, -inf padding) and the FPN merge
// lateral + F.interpolate(top, size=lateral size, mode="nearest") (legacy nearest: the source
// index is floor(dst * float32(in / out)), clamped to in - 1, computed in float32 like torch).

export function maxPool2dRef(
  a: { planes: number; h: number; w: number; kernel: number; stride: number; padding: number },
  input: ArrayLike<number>,
): { data: Float64Array; oh: number; ow: number } {
  const oh = Math.floor((a.h + 2 * a.padding - (a.kernel - 1) - 1) / a.stride) + 1;
  const ow = Math.floor((a.w + 2 * a.padding - (a.kernel - 1) - 1) / a.stride) + 1;
  const out = new Float64Array(a.planes * oh * ow);
  for (let p = 0; p < a.planes; p++)
    for (let y = 0; y < oh; y++)
      for (let x = 0; x < ow; x++) {
        let best = -Infinity;
        for (let ky = 0; ky < a.kernel; ky++)
          for (let kx = 0; kx < a.kernel; kx++) {
            const iy = y * a.stride - a.padding + ky;
            const ix = x * a.stride - a.padding + kx;
            if (iy < 0 || iy >= a.h || ix < 0 || ix >= a.w) continue;
            best = Math.max(best, input[(p * a.h + iy) * a.w + ix]);
          }
        out[(p * oh + y) * ow + x] = best;
      }
  return { data: out, oh, ow };
}

/** torch's nearest source index for output index `dst` (upsample_nearest2d, size given). */
export function nearestSourceIndex(dst: number, inSize: number, outSize: number): number {
  const scale = Math.fround(inSize / outSize);
  return Math.min(Math.floor(Math.fround(dst * scale)), inSize - 1);
}

export function upsampleNearestAddRef(
  a: { planes: number; h: number; w: number; topH: number; topW: number },
  lateral: ArrayLike<number>,
  top: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(a.planes * a.h * a.w);
  for (let p = 0; p < a.planes; p++)
    for (let y = 0; y < a.h; y++) {
      const sy = nearestSourceIndex(y, a.topH, a.h);
      for (let x = 0; x < a.w; x++) {
        const sx = nearestSourceIndex(x, a.topW, a.w);
        const i = (p * a.h + y) * a.w + x;
        out[i] = lateral[i] + top[(p * a.topH + sy) * a.topW + sx];
      }
    }
  return out;
}
