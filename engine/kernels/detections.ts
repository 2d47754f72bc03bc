// detections (shaders/detections.wgsl): gather the NMS survivors into the result arrays and
// scale their boxes back to the original image.

import source from '../../shaders/detections.wgsl';
import type { GpuContext } from '../gpu.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';

export function planDetections(
  ctx: GpuContext,
  p: { maxDetections: number; ratioH: number; ratioW: number },
  buffers: { candBoxes: GPUBuffer; candKeys: GPUBuffer; candGroup: GPUBuffer; kept: GPUBuffer; keptCount: GPUBuffer; boxes: GPUBuffer; result: GPUBuffer; labels: GPUBuffer; origBoxes: GPUBuffer },
  label = 'detections',
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  return Dispatch.create(
    ctx,
    kernel,
    { max_detections: p.maxDetections, ratio_h: p.ratioH, ratio_w: p.ratioW },
    {
      cand_boxes: buffers.candBoxes,
      cand_keys: buffers.candKeys,
      cand_group: buffers.candGroup,
      kept: buffers.kept,
      kept_count: buffers.keptCount,
      boxes: buffers.boxes,
      result: buffers.result,
      labels: buffers.labels,
      orig_boxes: buffers.origBoxes,
    },
    [ceilDiv(p.maxDetections, kernel.workgroup[0])],
  );
}
