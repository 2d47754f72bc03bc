// boxPostprocess (shaders/box_postprocess.wgsl): softmax, per-class decode, clip and filters of
// the box head's outputs -> per-class NMS candidates.

import source from '../../shaders/box_postprocess.wgsl';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';
import { BBOX_XFORM_CLIP, candidateTensors, type Candidates } from './rpnDecode.ts';

export interface BoxPostprocessSpec {
  maxProposals: number;
  classes: number;
  imageH: number;
  imageW: number;
  scoreThresh: number;
  minSize: number;
  /** BoxCoder weights (wx, wy, ww, wh). */
  weights: [number, number, number, number];
}

/**
 * Records torchvision's postprocess_detections up to NMS for `proposals` [K, 4] (proposalCount[0]
 * live), class logits [K, C] and box deltas [K, 4C]; returns K * (C - 1) candidates, row
 * r * (C - 1) + (c - 1) for proposal r and class c (background dropped).
 */
export function recordBoxPostprocess(
  rec: Recorder,
  p: BoxPostprocessSpec,
  io: { proposals: Tensor; proposalCount: Tensor; classLogits: Tensor; boxDeltas: Tensor },
  label = 'boxPostprocess',
): Candidates {
  const ctx = rec.ctx;
  const candidates = candidateTensors(rec, `${label}.cand`, p.maxProposals * (p.classes - 1));
  const kernel = ctx.kernel({ source, label });
  const [wx, wy, ww, wh] = p.weights;
  rec.record(Dispatch.create(
    ctx,
    kernel,
    { max_proposals: p.maxProposals, classes: p.classes, image_h: p.imageH, image_w: p.imageW, score_thresh: p.scoreThresh, min_size: p.minSize, clip: BBOX_XFORM_CLIP, wx, wy, ww, wh },
    {
      proposals: io.proposals.buffer,
      proposal_count: io.proposalCount.buffer,
      class_logits: io.classLogits.buffer,
      box_deltas: io.boxDeltas.buffer,
      cand_boxes: candidates.boxes.buffer,
      cand_keys: candidates.keys.buffer,
      cand_group: candidates.group.buffer,
      cand_valid: candidates.valid.buffer,
    },
    [ceilDiv(p.maxProposals, kernel.workgroup[0])],
  ));
  return candidates;
}
