// gatherBoxes (shaders/gather_boxes.wgsl): boxes of the NMS survivors, zero past the kept count.

import source from '../../shaders/gather_boxes.wgsl';
import type { GpuContext } from '../gpu.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';

export function planGatherBoxes(
  ctx: GpuContext,
  maxBoxes: number,
  buffers: { candBoxes: GPUBuffer; kept: GPUBuffer; keptCount: GPUBuffer; boxes: GPUBuffer },
  label = 'gatherBoxes',
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  return Dispatch.create(
    ctx,
    kernel,
    { max_boxes: maxBoxes },
    { cand_boxes: buffers.candBoxes, kept: buffers.kept, kept_count: buffers.keptCount, boxes: buffers.boxes },
    [ceilDiv(maxBoxes, kernel.workgroup[0])],
  );
}
