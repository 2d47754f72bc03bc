// boxPostprocess (shaders/box_postprocess.wgsl): softmax, per-class decode, clip and filters of
// the box head's outputs -> per-class NMS candidates.

import source from '../../shaders/box_postprocess.wgsl';
import type { GpuContext } from '../gpu.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';
import { BBOX_XFORM_CLIP } from './rpnDecode.ts';

export function planBoxPostprocess(
  ctx: GpuContext,
  p: { maxProposals: number; classes: number; imageH: number; imageW: number; scoreThresh: number; minSize: number; weights: [number, number, number, number] },
  buffers: {
    proposals: GPUBuffer;
    proposalCount: GPUBuffer;
    classLogits: GPUBuffer;
    boxDeltas: GPUBuffer;
    candBoxes: GPUBuffer;
    candKeys: GPUBuffer;
    candGroup: GPUBuffer;
    candValid: GPUBuffer;
  },
  label = 'boxPostprocess',
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  const [wx, wy, ww, wh] = p.weights;
  return Dispatch.create(
    ctx,
    kernel,
    { max_proposals: p.maxProposals, classes: p.classes, image_h: p.imageH, image_w: p.imageW, score_thresh: p.scoreThresh, min_size: p.minSize, clip: BBOX_XFORM_CLIP, wx, wy, ww, wh },
    {
      proposals: buffers.proposals,
      proposal_count: buffers.proposalCount,
      class_logits: buffers.classLogits,
      box_deltas: buffers.boxDeltas,
      cand_boxes: buffers.candBoxes,
      cand_keys: buffers.candKeys,
      cand_group: buffers.candGroup,
      cand_valid: buffers.candValid,
    },
    [ceilDiv(p.maxProposals, kernel.workgroup[0])],
  );
}
