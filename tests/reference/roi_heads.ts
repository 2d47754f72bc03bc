// CPU references for the box and mask heads' post-processing kernels (torchvision 0.14, eval,
// batch 1):
// - boxPostprocessRef (shaders/box_postprocess.wgsl): RoIHeads.postprocess_detections up to
//   batched_nms: softmax over the class logits, BoxCoder.decode_single of every class's deltas
//   against the proposal with weights (10, 10, 5, 5) and bbox_xform_clip, clip_boxes_to_image,
//   the background column dropped (boxes[:, 1:], scores[:, 1:], labels 1..C-1), flattened in
//   (proposal, class) order to row k * (C - 1) + (c - 1), then kept when score > score_thresh and
//   remove_small_boxes(min_size). Each row: box (always written), key (score, or -FLT_MAX when
//   dropped), group (the label c: batched_nms runs per class), valid flag. Proposals at or past
//   the RPN's kept count are padding: their rows are written but never valid.
// - detectionsRef (shaders/detections.wgsl): the survivors keep[:detections_per_img] gathered in
//   kept order, boxes in resized coordinates and scaled back as transform.postprocess /
//   resize_boxes does (x * float32(orig_w / new_w), y * float32(orig_h / new_h), one float32
//   product: exact), score, label; rows past the kept count zero.
// - maskLogitsRef (shaders/mask_logits.wgsl): mask_fcn_logits (1x1 conv) for the predicted label
//   only, then maskrcnn_inference's x.sigmoid(): [D][C][M][M] -> [D][M][M]; rows past the kept
//   count zero. float64.
// float32 is emulated with Math.fround where the shader's decisions depend on it (decode, softmax);
// see box_coder.ts.

import { type CandidatesRef, decodeClipRef, emptyCandidatesRef, NEG_KEY, SCORE_GUARD, sizeDecision, thresholdDecision } from './box_coder.ts';

const f = Math.fround;

export interface BoxPostprocessRefSpec {
  classes: number; // C, background included
  imageH: number;
  imageW: number;
  scoreThresh: number;
  minSize: number;
  weights: readonly [number, number, number, number];
}

/** softmax(logits[k, :]) in float32 as F.softmax: exp(x - max) / sum (summed in class order). */
export function softmaxF32(logits: ArrayLike<number>, row: number, C: number): Float32Array {
  let m = -Infinity;
  for (let c = 0; c < C; c++) m = Math.max(m, logits[row * C + c]);
  const e = new Float32Array(C);
  let sum = 0;
  for (let c = 0; c < C; c++) {
    e[c] = f(Math.exp(f(logits[row * C + c] - m)));
    sum = f(sum + e[c]);
  }
  for (let c = 0; c < C; c++) e[c] = f(e[c] / sum);
  return e;
}

/**
 * postprocess_detections before NMS for `maxProposals` proposals [K][4] (the first
 * `proposalCount` live), class logits [K][C] and box deltas [K][C][4]; returns K * (C - 1) rows.
 */
export function boxPostprocessRef(
  p: BoxPostprocessRefSpec,
  proposals: ArrayLike<number>,
  proposalCount: number,
  classLogits: ArrayLike<number>,
  boxDeltas: ArrayLike<number>,
  maxProposals: number,
): CandidatesRef {
  const C = p.classes;
  const out = emptyCandidatesRef(maxProposals * (C - 1));
  for (let k = 0; k < maxProposals; k++) {
    const live = k < proposalCount;
    const scores = softmaxF32(classLogits, k, C);
    const proposal = [0, 1, 2, 3].map((j) => proposals[4 * k + j]);
    for (let c = 1; c < C; c++) {
      const slot = k * (C - 1) + (c - 1);
      const delta = [0, 1, 2, 3].map((j) => boxDeltas[(k * C + c) * 4 + j]);
      const d = decodeClipRef(proposal, delta, p.weights, p.imageH, p.imageW);
      const score = thresholdDecision(scores[c], p.scoreThresh, SCORE_GUARD, true);
      const size = sizeDecision(d, p.minSize);
      const keep = live && score.pass && size.pass;
      out.boxes.set(d.box, 4 * slot);
      out.scale.set(d.scale, 4 * slot);
      out.keys[slot] = keep ? scores[c] : NEG_KEY;
      out.group[slot] = c;
      out.valid[slot] = keep ? 1 : 0;
      // A padding proposal is never kept, whatever its numbers: no tie possible there.
      out.nearTie[slot] = live && (score.nearTie || size.nearTie) ? 1 : 0;
    }
  }
  return out;
}

export interface DetectionsRef {
  /** [D][4] resized-image coordinates. */
  boxes: Float32Array;
  /** [D][6] x1 y1 x2 y2 (original coordinates), score, label. */
  result: Float32Array;
  labels: Uint32Array;
  /** [D][4] original-image coordinates. */
  origBoxes: Float32Array;
}

/** The kept candidates (indices `kept`, `keptCount` of them) as the detection outputs. */
export function detectionsRef(
  p: { maxDetections: number; ratioH: number; ratioW: number },
  cand: { boxes: ArrayLike<number>; keys: ArrayLike<number>; group: ArrayLike<number> },
  kept: ArrayLike<number>,
  keptCount: number,
): DetectionsRef {
  const D = p.maxDetections;
  const out: DetectionsRef = { boxes: new Float32Array(4 * D), result: new Float32Array(6 * D), labels: new Uint32Array(D), origBoxes: new Float32Array(4 * D) };
  const rw = f(p.ratioW);
  const rh = f(p.ratioH);
  for (let i = 0; i < Math.min(keptCount, D); i++) {
    const s = kept[i];
    const box = [0, 1, 2, 3].map((j) => cand.boxes[4 * s + j]);
    // resize_boxes: xmin * ratio_width, ymin * ratio_height, ... in float32.
    const orig = [f(box[0] * rw), f(box[1] * rh), f(box[2] * rw), f(box[3] * rh)];
    out.boxes.set(box, 4 * i);
    out.origBoxes.set(orig, 4 * i);
    out.result.set([...orig, cand.keys[s], cand.group[s]], 6 * i);
    out.labels[i] = cand.group[s];
  }
  return out;
}

/** sigmoid of logits[n][labels[n]] for n < keptCount, zero after: [D][pixels] in float64. */
export function maskLogitsRef(
  features: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  labels: ArrayLike<number>,
  keptCount: number,
  d: { D: number; C: number; classes: number; pixels: number },
): Float64Array {
  const out = new Float64Array(d.D * d.pixels);
  for (let n = 0; n < Math.min(keptCount, d.D); n++) {
    const l = labels[n];
    for (let q = 0; q < d.pixels; q++) {
      let x = bias[l];
      for (let c = 0; c < d.C; c++) x += weight[l * d.C + c] * features[(n * d.C + c) * d.pixels + q];
      out[n * d.pixels + q] = 1 / (1 + Math.exp(-x));
    }
  }
  return out;
}
