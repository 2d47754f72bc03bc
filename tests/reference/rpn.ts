// CPU references for the RPN kernels (torchvision 0.14 RegionProposalNetwork, eval, batch 1):
// - rpnScoresRef (shaders/rpn_scores.wgsl): permute_and_flatten of the head's cls_logits
//   (models/detection/rpn.py, concat_box_prediction_layers): [A][H][W] -> (y, x, a) order,
//   index (y * W + x) * A + a. A pure permutation: exact.
// - rpnDecodeRef (shaders/rpn_decode.wgsl): filter_proposals after the per-level top-k, for the
//   top-k (logit, flat index) pairs of one level: the anchor of AnchorGenerator.grid_anchors
//   (shifts x * stride_w, y * stride_h plus the cell anchor, in float32), BoxCoder.decode_single
//   with weights (1, 1, 1, 1) and bbox_xform_clip, clip_boxes_to_image, remove_small_boxes(min_size),
//   objectness_prob = sigmoid(logit) kept when >= score_thresh; NMS candidates written to rows
//   [offset, offset + k): box (written whether kept or not), key (prob, or -FLT_MAX when dropped),
//   group (the level: batched_nms runs per level), valid flag. Rows outside are left alone.
// - gatherBoxesRef (shaders/gather_boxes.wgsl): proposals = boxes[keep] after batched_nms
//   (keep[:post_nms_top_n]), rows past the kept count zero. Exact.
// float32 is emulated with Math.fround (see box_coder.ts for the decode and what may differ).

import { type CandidatesRef, decodeClipRef, NEG_KEY, SCORE_GUARD, sizeDecision, thresholdDecision } from './box_coder.ts';

const f = Math.fround;

/** permute_and_flatten of one level's objectness logits [A][H][W] -> [H * W * A]. */
export function rpnScoresRef(logits: Float32Array, A: number, H: number, W: number): Float32Array {
  const out = new Float32Array(H * W * A);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let a = 0; a < A; a++) out[(y * W + x) * A + a] = logits[a * H * W + y * W + x];
    }
  }
  return out;
}

/** Parameters of one level, as RpnLevelDecode (engine/kernels/rpnDecode.ts). */
export interface RpnLevelRef {
  k: number;
  offset: number;
  level: number;
  anchors: number;
  h: number;
  w: number;
  strideH: number;
  strideW: number;
  imageH: number;
  imageW: number;
  minSize: number;
  scoreThresh: number;
}

/** sigmoid(x) as torch.sigmoid in float32: 1 / (1 + exp(-x)). */
export function sigmoidF32(x: number): number {
  return f(1 / f(1 + f(Math.exp(-x))));
}

/** The anchor of flat index (y * W + x) * A + a: (x * sw, y * sh, x * sw, y * sh) + cell[a], float32. */
export function anchorRef(flat: number, p: RpnLevelRef, cell: ArrayLike<number>): [number, number, number, number] {
  const a = flat % p.anchors;
  const pixel = Math.floor(flat / p.anchors);
  const y = Math.floor(pixel / p.w);
  const x = pixel % p.w;
  const sx = x * p.strideW; // int32 shifts, exact in float32 for any image size
  const sy = y * p.strideH;
  return [f(sx + cell[4 * a]), f(sy + cell[4 * a + 1]), f(sx + cell[4 * a + 2]), f(sy + cell[4 * a + 3])];
}

/**
 * Writes the candidates of one level into rows [offset, offset + k) of `out`.
 * `topIndex` holds (y, x, a) flat indices, `deltas` is the head's bbox_pred [4A][H][W], `cell` [A][4].
 */
export function rpnDecodeRef(p: RpnLevelRef, topLogits: ArrayLike<number>, topIndex: ArrayLike<number>, deltas: ArrayLike<number>, cell: ArrayLike<number>, out: CandidatesRef): void {
  const hw = p.h * p.w;
  for (let r = 0; r < p.k; r++) {
    const flat = topIndex[r];
    const a = flat % p.anchors;
    const pixel = Math.floor(flat / p.anchors);
    // bbox_pred channel a * 4 + j at this pixel: box_regression's (dx, dy, dw, dh) of the anchor.
    const delta = [0, 1, 2, 3].map((j) => deltas[(4 * a + j) * hw + pixel]);
    const d = decodeClipRef(anchorRef(flat, p, cell), delta, [1, 1, 1, 1], p.imageH, p.imageW);

    const prob = sigmoidF32(topLogits[r]);
    const size = sizeDecision(d, p.minSize);
    const score = thresholdDecision(prob, p.scoreThresh, SCORE_GUARD);
    const keep = size.pass && score.pass;

    const slot = p.offset + r;
    out.boxes.set(d.box, 4 * slot);
    out.scale.set(d.scale, 4 * slot);
    out.keys[slot] = keep ? prob : NEG_KEY;
    out.group[slot] = p.level;
    out.valid[slot] = keep ? 1 : 0;
    out.nearTie[slot] = size.nearTie || score.nearTie ? 1 : 0;
  }
}

/** boxes[kept[i]] for i < keptCount, zero rows up to maxBoxes. */
export function gatherBoxesRef(candBoxes: ArrayLike<number>, kept: ArrayLike<number>, keptCount: number, maxBoxes: number): Float32Array {
  const out = new Float32Array(4 * maxBoxes);
  for (let i = 0; i < Math.min(keptCount, maxBoxes); i++) {
    for (let j = 0; j < 4; j++) out[4 * i + j] = candBoxes[4 * kept[i] + j];
  }
  return out;
}
