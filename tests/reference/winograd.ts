// float64 references for the Winograd conv (engine/kernels/winograd.ts, shaders/winograd.wgsl):
// the algorithm itself, tile by tile with the transform matrices (it must equal the direct conv
// in exact arithmetic: this checks the matrices, the tiling and the borders), and the magnitude
// sum S = sum |w x| + |bias| (+ |residual|) per output, the scale of the error bound
// (tests/tolerance.ts, WINOGRAD_TOLERANCE).

import { WINOGRAD_AT, WINOGRAD_BT, WINOGRAD_G, type WinogradSize } from '../../engine/kernels/winograd.ts';
import { conv2dRef, type ConvRefArgs } from './conv2d.ts';

/** torch conv2d (3x3, stride 1, zero padding) + bias (+ ReLU) computed as F(m, 3) in float64. */
export function winogradConv2dRef(a: ConvRefArgs, input: ArrayLike<number>, weight: ArrayLike<number>, bias: ArrayLike<number> | undefined, m: WinogradSize): { data: Float64Array; oh: number; ow: number } {
  if (a.kh !== 3 || a.kw !== 3) throw new Error('winogradConv2dRef: 3x3 kernels only');
  const [ph, pw] = a.padding ?? [0, 0];
  const oh = a.h + 2 * ph - 2;
  const ow = a.w + 2 * pw - 2;
  const A = m + 2;
  const G = WINOGRAD_G[m];
  const BT = WINOGRAD_BT[m];
  const AT = WINOGRAD_AT[m];
  const mul = (x: number[][], y: number[][]) => x.map((row) => y[0].map((_, j) => row.reduce((s, v, k) => s + v * y[k][j], 0)));
  const tr = (x: number[][]) => x[0].map((_, j) => x.map((row) => row[j]));
  // U[o][i] = G g G^T
  const U = Array.from({ length: a.cout }, (_, o) =>
    Array.from({ length: a.cin }, (_, i) => {
      const g = [0, 1, 2].map((r) => [0, 1, 2].map((c) => weight[((o * a.cin + i) * 3 + r) * 3 + c]));
      return mul(mul(G, g), tr(G));
    }),
  );
  const out = new Float64Array(a.batch * a.cout * oh * ow);
  for (let b = 0; b < a.batch; b++)
    for (let ty = 0; ty < Math.ceil(oh / m); ty++)
      for (let tx = 0; tx < Math.ceil(ow / m); tx++) {
        // V[i] = B^T d B for each input channel's tile
        const V = Array.from({ length: a.cin }, (_, i) => {
          const d = Array.from({ length: A }, (_, r) =>
            Array.from({ length: A }, (_, c) => {
              const y = ty * m + r - ph;
              const x = tx * m + c - pw;
              return y >= 0 && y < a.h && x >= 0 && x < a.w ? input[((b * a.cin + i) * a.h + y) * a.w + x] : 0;
            }),
          );
          return mul(mul(BT, d), tr(BT));
        });
        for (let o = 0; o < a.cout; o++) {
          const M = Array.from({ length: A }, (_, r) => Array.from({ length: A }, (_, c) => V.reduce((s, v, i) => s + U[o][i][r][c] * v[r][c], 0)));
          const Y = mul(mul(AT, M), tr(AT));
          for (let p = 0; p < m; p++)
            for (let q = 0; q < m; q++) {
              const y = ty * m + p;
              const x = tx * m + q;
              if (y >= oh || x >= ow) continue;
              const v = Y[p][q] + (bias ? bias[o] : 0);
              out[((b * a.cout + o) * oh + y) * ow + x] = a.relu ? Math.max(0, v) : v;
            }
        }
      }
  return { data: out, oh, ow };
}

/** S per output: the conv of |x| with |w| plus |bias| and |residual| (float64). */
export function convMagnitudeRef(a: ConvRefArgs, input: ArrayLike<number>, weight: ArrayLike<number>, bias?: ArrayLike<number>, residual?: ArrayLike<number>): Float64Array {
  const abs = (v: ArrayLike<number>) => Float64Array.from(v as ArrayLike<number>, Math.abs);
  return conv2dRef({ ...a, relu: false }, abs(input), abs(weight), bias && abs(bias), residual && abs(residual)).data;
}
