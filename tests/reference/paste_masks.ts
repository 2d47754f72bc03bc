// CPU reference for torchvision's paste_masks_in_image(masks, boxes, (H, W), padding=1)
// (models/detection/roi_heads.py: expand_masks, expand_boxes, paste_mask_in_image), emulating
// torch's float32 arithmetic with Math.fround. The bilinear resize is F.interpolate(mode=
// "bilinear", align_corners=False) as ATen's CPU kernel computes it in torch 1.13 (Debian's
// python3-torch, the project's oracle), established by probing that build:
//   scale = float32(in / out); src = scale * (d + 0.5) - 0.5 in double (exact), clamped at 0;
//   i0 = trunc(src), i1 = i0 + (i0 < in - 1); l1 = float32(src - i0); l0 = float32(1 - l1);
//   a size equal to the input copies (i0 = i1 = d, l0 = 1, l1 = 0);
//   out = float32(sum over the 4 taps of float32(h_i * w_j) * v_ij, summed in double).
// (Newer torch builds use FMA forms instead, reference doc section 8; they differ by an ulp or
// two, which only matters for pixels within an ulp of the threshold.)
// Boxes entirely outside the image (never produced by the model, whose boxes are clipped) give an
// empty mask here; torch's slicing with negative ends would not.

const f = Math.fround;

/** expand_boxes(boxes, (M + 2p) / M) then .to(int64): truncation toward zero. */
export function expandBoxRef(box: ArrayLike<number>, maskSize: number, padding: number): [number, number, number, number] {
  const scale = f((maskSize + 2 * padding) / maskSize); // Python float, used as a float32 scalar
  const wHalf = f(f(f(box[2] - box[0]) * 0.5) * scale);
  const hHalf = f(f(f(box[3] - box[1]) * 0.5) * scale);
  const xc = f(f(box[2] + box[0]) * 0.5);
  const yc = f(f(box[3] + box[1]) * 0.5);
  return [Math.trunc(f(xc - wHalf)), Math.trunc(f(yc - hHalf)), Math.trunc(f(xc + wHalf)), Math.trunc(f(yc + hHalf))];
}

/** Source taps for output index d: [i0, i1, l0, l1]. */
function taps(d: number, inSize: number, outSize: number): [number, number, number, number] {
  if (inSize === outSize) return [d, d, 1, 0];
  const scale = f(inSize / outSize);
  let src = scale * (d + 0.5) - 0.5; // double, exact
  if (src < 0) src = 0;
  const i0 = Math.trunc(src);
  const i1 = i0 + (i0 < inSize - 1 ? 1 : 0);
  const l1 = f(Math.min(Math.max(src - i0, 0), 1));
  return [i0, i1, f(1 - l1), l1];
}

/** F.interpolate(x[None, None], size=(outH, outW), mode='bilinear', align_corners=False). */
export function interpolateBilinearRef(src: Float32Array, inH: number, inW: number, outH: number, outW: number): Float32Array {
  return interpolateRows(src, inH, inW, outH, outW, 0, outH);
}

/** Rows [from, to) of interpolateBilinearRef(src, inH, inW, outH, outW). */
function interpolateRows(src: Float32Array, inH: number, inW: number, outH: number, outW: number, from: number, to: number): Float32Array {
  const out = new Float32Array((to - from) * outW);
  const xs = Array.from({ length: outW }, (_, x) => taps(x, inW, outW));
  for (let y = from; y < to; y++) {
    const [y0, y1, h0, h1] = taps(y, inH, outH);
    const r0 = y0 * inW;
    const r1 = y1 * inW;
    for (let x = 0; x < outW; x++) {
      const [x0, x1, w0, w1] = xs[x];
      // float32 2-D weights, the four products summed in double, one rounding at the end.
      out[(y - from) * outW + x] = f(f(h0 * w0) * src[r0 + x0] + f(h0 * w1) * src[r0 + x1] + f(h1 * w0) * src[r1 + x0] + f(h1 * w1) * src[r1 + x1]);
    }
  }
  return out;
}

export interface PasteRef {
  /** [n][H][W] float32 probabilities, as paste_masks_in_image returns them. */
  probs: Float32Array;
  /** [n][4] expanded integer boxes. */
  boxes: Int32Array;
}

/** masks: [n][M][M]; boxes: [n][4] in original-image coordinates. */
export function pasteMasksRef(masks: Float32Array, boxes: Float32Array, n: number, maskSize: number, height: number, width: number, padding = 1): PasteRef {
  const P = maskSize + 2 * padding;
  const probs = new Float32Array(n * height * width);
  const expanded = new Int32Array(n * 4);
  const padded = new Float32Array(P * P);
  for (let k = 0; k < n; k++) {
    padded.fill(0);
    for (let y = 0; y < maskSize; y++)
      for (let x = 0; x < maskSize; x++) padded[(y + padding) * P + x + padding] = masks[(k * maskSize + y) * maskSize + x];
    const b = expandBoxRef(boxes.subarray(4 * k, 4 * k + 4), maskSize, padding);
    expanded.set(b, 4 * k);
    const w = Math.max(b[2] - b[0] + 1, 1);
    const h = Math.max(b[3] - b[1] + 1, 1);
    const x0 = Math.max(b[0], 0);
    const x1 = Math.min(b[2] + 1, width);
    const y0 = Math.max(b[1], 0);
    const y1 = Math.min(b[3] + 1, height);
    if (x1 <= x0 || y1 <= y0) continue;
    // Only the visible part of the resized mask is needed; resize it row by row.
    const rows = interpolateRows(padded, P, P, h, w, y0 - b[1], y1 - b[1]);
    for (let y = y0; y < y1; y++)
      for (let x = x0; x < x1; x++) probs[(k * height + y) * width + x] = rows[(y - y0) * w + (x - b[0])];
  }
  return { probs, boxes: expanded };
}

/** Bit-packs probs > threshold: rows of ceil(W/32) u32 words, pixel x in bit x & 31 of word x >> 5. */
export function packMaskBits(probs: Float32Array, n: number, height: number, width: number, threshold = 0.5): Uint32Array {
  const rowWords = Math.ceil(width / 32);
  const bits = new Uint32Array(n * height * rowWords);
  for (let k = 0; k < n; k++)
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++)
        if (probs[(k * height + y) * width + x] > threshold) bits[(k * height + y) * rowWords + (x >> 5)] |= 1 << (x & 31);
  return bits;
}
