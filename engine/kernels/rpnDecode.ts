// rpnDecode (shaders/rpn_decode.wgsl): one level's top-k anchors -> clipped, size-filtered
// proposal candidates with sigmoid scores as sort keys and the level as NMS group.

import source from '../../shaders/rpn_decode.wgsl';
import type { GpuContext } from '../gpu.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';

export interface RpnLevelDecode {
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

/** log(1000 / 16) as float32, torchvision's bbox_xform_clip. */
export const BBOX_XFORM_CLIP = Math.fround(Math.log(1000 / 16));

export function planRpnDecode(
  ctx: GpuContext,
  p: RpnLevelDecode,
  buffers: {
    topLogits: GPUBuffer;
    topIndex: GPUBuffer;
    deltas: GPUBuffer;
    cell: GPUBuffer;
    candBoxes: GPUBuffer;
    candKeys: GPUBuffer;
    candGroup: GPUBuffer;
    candValid: GPUBuffer;
  },
  label = 'rpnDecode',
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  return Dispatch.create(
    ctx,
    kernel,
    {
      k: p.k,
      offset: p.offset,
      level: p.level,
      anchors: p.anchors,
      h: p.h,
      w: p.w,
      stride_h: p.strideH,
      stride_w: p.strideW,
      image_h: p.imageH,
      image_w: p.imageW,
      min_size: p.minSize,
      score_thresh: p.scoreThresh,
      clip: BBOX_XFORM_CLIP,
    },
    {
      top_logits: buffers.topLogits,
      top_index: buffers.topIndex,
      deltas: buffers.deltas,
      cell: buffers.cell,
      cand_boxes: buffers.candBoxes,
      cand_keys: buffers.candKeys,
      cand_group: buffers.candGroup,
      cand_valid: buffers.candValid,
    },
    [ceilDiv(p.k, kernel.workgroup[0])],
  );
}
