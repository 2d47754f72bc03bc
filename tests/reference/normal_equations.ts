// float64 reference for shaders/normal_equations.wgsl: the normal equations of a least-squares
// conv refit (He et al. 2017, "Channel Pruning for Accelerating Very Deep Neural Networks"):
// X = the im2col rows of the input (torch's (c, ky, kx) column order, zero padding), one row per
// output position over batch, OH, OW, plus a constant 1 column; T = target - base at those
// positions (or every step-th of them, from an offset). Returns G = [X^T X | X^T T] in full (both
// triangles), F x (F + M), row-major.

export interface NormalEquationsRefArgs {
  batch: number;
  cin: number;
  h: number;
  w: number;
  kh: number;
  kw: number;
  stride?: [number, number];
  padding?: [number, number];
  targets: number;
}

export function normalEquationsRef(
  a: NormalEquationsRefArgs,
  input: ArrayLike<number>,
  target: ArrayLike<number>,
  base?: ArrayLike<number>,
  sample: { step: number; offset: number } = { step: 1, offset: 0 },
): { gram: Float64Array; features: number; columns: number; oh: number; ow: number } {
  const [sh, sw] = a.stride ?? [1, 1];
  const [ph, pw] = a.padding ?? [0, 0];
  const oh = Math.floor((a.h + 2 * ph - a.kh) / sh) + 1;
  const ow = Math.floor((a.w + 2 * pw - a.kw) / sw) + 1;
  const k = a.cin * a.kh * a.kw;
  const features = k + 1;
  const columns = features + a.targets;
  const gram = new Float64Array(features * columns);
  const row = new Float64Array(columns);
  for (let n = 0; n < a.batch; n++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++) {
        // Only every step-th position of the flattened (n, oy, ox) range, from offset.
        if (((n * oh + oy) * ow + ox - sample.offset) % sample.step !== 0 || (n * oh + oy) * ow + ox < sample.offset) continue;
        for (let c = 0; c < a.cin; c++)
          for (let ky = 0; ky < a.kh; ky++)
            for (let kx = 0; kx < a.kw; kx++) {
              const iy = oy * sh - ph + ky;
              const ix = ox * sw - pw + kx;
              const inside = iy >= 0 && ix >= 0 && iy < a.h && ix < a.w;
              row[(c * a.kh + ky) * a.kw + kx] = inside ? input[((n * a.cin + c) * a.h + iy) * a.w + ix] : 0;
            }
        row[k] = 1;
        for (let m = 0; m < a.targets; m++) {
          const at = ((n * a.targets + m) * oh + oy) * ow + ox;
          row[features + m] = target[at] - (base ? base[at] : 0);
        }
        for (let i = 0; i < features; i++) for (let j = 0; j < columns; j++) gram[i * columns + j] += row[i] * row[j];
      }
  return { gram, features, columns, oh, ow };
}
