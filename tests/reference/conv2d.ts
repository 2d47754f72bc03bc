// float64 reference for torch.nn.functional.conv2d (groups = 1, zero padding) with the epilogue
// conv2d.wgsl fuses: + bias, + residual (before the ReLU), ReLU. NCHW, weight [Cout][Cin][KH][KW].

export interface ConvRefArgs {
  batch: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  stride?: [number, number];
  padding?: [number, number];
  dilation?: [number, number];
  relu?: boolean;
}

export function conv2dRef(
  a: ConvRefArgs,
  input: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias?: ArrayLike<number>,
  residual?: ArrayLike<number>,
): { data: Float64Array; oh: number; ow: number } {
  const [sh, sw] = a.stride ?? [1, 1];
  const [ph, pw] = a.padding ?? [0, 0];
  const [dh, dw] = a.dilation ?? [1, 1];
  const oh = Math.floor((a.h + 2 * ph - dh * (a.kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((a.w + 2 * pw - dw * (a.kw - 1) - 1) / sw) + 1;
  const out = new Float64Array(a.batch * a.cout * oh * ow);
  for (let b = 0; b < a.batch; b++)
    for (let o = 0; o < a.cout; o++)
      for (let y = 0; y < oh; y++)
        for (let x = 0; x < ow; x++) {
          const idx = ((b * a.cout + o) * oh + y) * ow + x;
          out[idx] = conv2dRefAt(a, input, weight, bias, residual?.[idx], b, o, y, x);
        }
  return { data: out, oh, ow };
}

/** One output value of conv2dRef: lets benchmarks spot-check full-size layers cheaply. */
export function conv2dRefAt(
  a: ConvRefArgs,
  input: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number> | undefined,
  residual: number | undefined,
  b: number,
  o: number,
  y: number,
  x: number,
): number {
  const [sh, sw] = a.stride ?? [1, 1];
  const [ph, pw] = a.padding ?? [0, 0];
  const [dh, dw] = a.dilation ?? [1, 1];
  let s = bias ? bias[o] : 0;
  for (let i = 0; i < a.cin; i++)
    for (let ky = 0; ky < a.kh; ky++) {
      const iy = y * sh - ph + ky * dh;
      if (iy < 0 || iy >= a.h) continue;
      for (let kx = 0; kx < a.kw; kx++) {
        const ix = x * sw - pw + kx * dw;
        if (ix < 0 || ix >= a.w) continue;
        s += input[((b * a.cin + i) * a.h + iy) * a.w + ix] * weight[((o * a.cin + i) * a.kh + ky) * a.kw + kx];
      }
    }
  if (residual !== undefined) s += residual;
  return a.relu ? Math.max(0, s) : s;
}

/**
 * torch.nn.ConvTranspose2d(cin, cout, kernel_size=s, stride=s, padding=0) (+ ReLU), weight
 * [Cin][Cout][S][S]: out[b, o, y*s+ky, x*s+kx] = bias[o] + sum_i in[b, i, y, x] W[i, o, ky, kx].
 */
export function convTranspose2dRef(
  a: { batch: number; cin: number; cout: number; h: number; w: number; scale: number; relu?: boolean },
  input: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias?: ArrayLike<number>,
): Float64Array {
  const s = a.scale;
  const OH = a.h * s;
  const OW = a.w * s;
  const out = new Float64Array(a.batch * a.cout * OH * OW);
  for (let b = 0; b < a.batch; b++)
    for (let o = 0; o < a.cout; o++)
      for (let Y = 0; Y < OH; Y++)
        for (let X = 0; X < OW; X++) {
          const y = Math.floor(Y / s);
          const x = Math.floor(X / s);
          let acc = bias ? bias[o] : 0;
          for (let i = 0; i < a.cin; i++)
            acc += input[((b * a.cin + i) * a.h + y) * a.w + x] * weight[((i * a.cout + o) * s + (Y % s)) * s + (X % s)];
          out[((b * a.cout + o) * OH + Y) * OW + X] = a.relu ? Math.max(0, acc) : acc;
        }
  return out;
}
