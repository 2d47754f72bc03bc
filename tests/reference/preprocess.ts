// float32-emulating reference for GeneralizedRCNNTransform on one image: (x/255 - mean)/std, then
// ATen's upsample_bilinear2d (align_corners=False, scale = in/out as float32; the source index is
// scale*(d+0.5)-0.5 clamped at 0; height weights outside, width weights inside), then zero padding.

import { normalizationTable, type ResizePlan } from '../../engine/kernels/preprocess.ts';

const f = Math.fround;

function taps(d: number, inSize: number, outSize: number): [number, number, number, number] {
  if (inSize === outSize) return [d, d, 1, 0];
  const scale = f(inSize / outSize);
  const src = Math.max(f(scale * (d + 0.5) - 0.5), 0);
  const i0 = Math.min(Math.floor(src), inSize - 1);
  const i1 = i0 + (i0 < inSize - 1 ? 1 : 0);
  const l1 = Math.min(Math.max(f(src - i0), 0), 1);
  return [i0, i1, f(1 - l1), l1];
}

export function preprocessRef(rgb: Uint8Array, plan: ResizePlan, mean: number[], std: number[]): Float32Array {
  const table = normalizationTable(mean, std);
  const out = new Float32Array(3 * plan.paddedH * plan.paddedW);
  const px = (c: number, y: number, x: number) => table[c * 256 + rgb[(y * plan.inW + x) * 3 + c]];
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < plan.outH; y++) {
      const [y0, y1, h0, h1] = taps(y, plan.inH, plan.outH);
      for (let x = 0; x < plan.outW; x++) {
        const [x0, x1, w0, w1] = taps(x, plan.inW, plan.outW);
        const top = f(w0 * px(c, y0, x0) + f(w1 * px(c, y0, x1)));
        const bottom = f(w0 * px(c, y1, x0) + f(w1 * px(c, y1, x1)));
        out[(c * plan.paddedH + y) * plan.paddedW + x] = f(h0 * top + f(h1 * bottom));
      }
    }
  return out;
}
