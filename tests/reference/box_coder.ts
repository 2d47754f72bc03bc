// CPU reference for the box decoding shared by shaders/rpn_decode.wgsl and
// shaders/box_postprocess.wgsl, following torchvision 0.14:
// - BoxCoder.decode_single (models/detection/_utils.py): widths = x2 - x1, ctr = x1 + 0.5 * w,
//   dx = rel_codes[:, 0::4] / wx (and dy, dw, dh), dw/dh clamped from above at bbox_xform_clip =
//   log(1000 / 16), pred_ctr = dx * w + ctr, pred_w = exp(dw) * w, corners pred_ctr -/+ 0.5 * pred_w.
//   Weights (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for the box head.
// - ops/boxes.py clip_boxes_to_image (x clamped to [0, width], y to [0, height]) and
//   remove_small_boxes (keep when both sides >= min_size).
// torch computes all of it in float32; every operation is rounded with Math.fround here, exp
// included (torch's and the GPU's exp are both within an ulp or a few of the true value, so the
// decoded corners may differ from the GPU's by a few ulps of the terms they come from: `scale`
// gives that magnitude for the test's tolerance, and `nearTie` flags filter decisions close
// enough to their threshold for such ulps to flip them). Thresholds (min_size, score_thresh)
// are float32 as well: torch compares a float32 tensor with a Python scalar in float32, and the
// engine passes them as f32 uniforms.

const f = Math.fround;

/** torchvision's bbox_xform_clip, log(1000 / 16), as the float32 torch compares dw against. */
export const BBOX_XFORM_CLIP_F32 = f(Math.log(1000 / 16));

/**
 * Guard bands: how far a decision quantity must be from its threshold for the float32 decision
 * not to depend on last-ulp differences of exp (and of division and FMA contraction) between
 * torch/this reference and the GPU. A corner may be off by DECISION_GUARD_ABS +
 * DECISION_GUARD_REL * (magnitude of its terms) (~16 ulps of the larger term; the tests accept
 * exactly that error on the corners), a side by the sum over its two corners, a score (sigmoid or
 * softmax, <= 1) by SCORE_GUARD (~8-16 ulps). The tests check that their data has no decision
 * inside a band, so the valid flags can be compared exactly.
 */
export const DECISION_GUARD_ABS = 1e-5;
export const DECISION_GUARD_REL = 1e-6;
export const SCORE_GUARD = 1e-6;

export interface DecodedBox {
  /** Clipped x1, y1, x2, y2 (float32 values). */
  box: [number, number, number, number];
  /** Per corner: |pred_ctr| + |0.5 * pred_size|, the magnitude the corner is computed from. */
  scale: [number, number, number, number];
  /**
   * Per corner: how far the GPU's value may be from this one under exp's last-ulp differences,
   * DECISION_GUARD_ABS + DECISION_GUARD_REL * scale, or 0 when the clamp certainly applies (the
   * unclamped corner lies beyond the border by more than that): the corner is then exactly 0 or
   * the image size on both sides.
   */
  band: [number, number, number, number];
}

/** decode_single for one box and one 4-vector of deltas, then clip_boxes_to_image. */
export function decodeClipRef(
  anchor: ArrayLike<number>,
  delta: ArrayLike<number>,
  weights: readonly [number, number, number, number],
  imageH: number,
  imageW: number,
): DecodedBox {
  const [wx, wy, ww, wh] = weights.map(f);
  const widths = f(anchor[2] - anchor[0]);
  const heights = f(anchor[3] - anchor[1]);
  const ctrX = f(anchor[0] + f(0.5 * widths));
  const ctrY = f(anchor[1] + f(0.5 * heights));

  const dx = f(delta[0] / wx);
  const dy = f(delta[1] / wy);
  const dw = Math.min(f(delta[2] / ww), BBOX_XFORM_CLIP_F32); // torch.clamp(dw, max=bbox_xform_clip)
  const dh = Math.min(f(delta[3] / wh), BBOX_XFORM_CLIP_F32);

  const predCtrX = f(f(dx * widths) + ctrX);
  const predCtrY = f(f(dy * heights) + ctrY);
  const predW = f(f(Math.exp(dw)) * widths);
  const predH = f(f(Math.exp(dh)) * heights);
  const halfW = f(0.5 * predW);
  const halfH = f(0.5 * predH);

  // Unclipped corners, then clip_boxes_to_image: x in [0, width], y in [0, height].
  const raw = [f(predCtrX - halfW), f(predCtrY - halfH), f(predCtrX + halfW), f(predCtrY + halfH)];
  const hi = [f(imageW), f(imageH), f(imageW), f(imageH)];
  const sx = Math.abs(predCtrX) + Math.abs(halfW);
  const sy = Math.abs(predCtrY) + Math.abs(halfH);
  const scale: [number, number, number, number] = [sx, sy, sx, sy];
  const box = raw.map((v, i) => Math.min(Math.max(v, 0), hi[i])) as [number, number, number, number];
  const band = raw.map((v, i) => {
    const b = DECISION_GUARD_ABS + DECISION_GUARD_REL * scale[i];
    return v < -b || v > hi[i] + b ? 0 : b;
  }) as [number, number, number, number];
  return { box, scale, band };
}

/** `value >= threshold` (or `>` when strict) in float32, and whether |value - threshold| <= band. */
export function thresholdDecision(value: number, threshold: number, band: number, strict = false): { pass: boolean; nearTie: boolean } {
  const t = f(threshold);
  return { pass: strict ? value > t : value >= t, nearTie: band > 0 && Math.abs(value - t) <= band };
}

/** remove_small_boxes for one decoded, clipped box: both sides >= min_size (float32 sides). */
export function sizeDecision(d: DecodedBox, minSize: number): { pass: boolean; nearTie: boolean } {
  const [x1, y1, x2, y2] = d.box;
  const w = thresholdDecision(f(x2 - x1), minSize, d.band[0] + d.band[2]);
  const h = thresholdDecision(f(y2 - y1), minSize, d.band[1] + d.band[3]);
  return { pass: w.pass && h.pass, nearTie: w.nearTie || h.nearTie };
}

/** NMS candidate arrays as rpn_decode.wgsl / box_postprocess.wgsl write them. */
export interface CandidatesRef {
  /** [n][4] x1 y1 x2 y2. */
  boxes: Float32Array;
  /** [n] sort key: the score when valid, -FLT_MAX when filtered out. */
  keys: Float32Array;
  /** [n] NMS group: RPN level or class label. */
  group: Uint32Array;
  /** [n] 1 = kept by the filters, 0 = filtered out. */
  valid: Uint32Array;
  /** [n][4] magnitude of the float32 terms behind each corner (0 where the row is not written). */
  scale: Float64Array;
  /** [n] 1 when a filter decision of the row lies inside the guard band (ambiguous under exp's ulps). */
  nearTie: Uint8Array;
}

/** -FLT_MAX, the key of a filtered-out candidate (the shaders' NEG_INF). */
export const NEG_KEY = -3.4028234663852886e38;

export function emptyCandidatesRef(n: number): CandidatesRef {
  return {
    boxes: new Float32Array(4 * n),
    keys: new Float32Array(n),
    group: new Uint32Array(n),
    valid: new Uint32Array(n),
    scale: new Float64Array(4 * n),
    nearTie: new Uint8Array(n),
  };
}
