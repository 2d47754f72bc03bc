// maskSelect (shaders/mask_select.wgsl): sigmoid of each detection's predicted-class mask logits.

import source from '../../shaders/mask_select.wgsl';
import type { GpuContext } from '../gpu.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

export function planMaskSelect(
  ctx: GpuContext,
  p: { maxDetections: number; classes: number; pixels: number },
  buffers: { logits: GPUBuffer; labels: GPUBuffer; keptCount: GPUBuffer; probs: GPUBuffer },
  label = 'maskSelect',
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(ctx, p.maxDetections * p.pixels, kernel.workgroup[0]);
  return Dispatch.create(
    ctx,
    kernel,
    { max_detections: p.maxDetections, classes: p.classes, pixels: p.pixels, row_pitch: rowPitch },
    { logits: buffers.logits, labels: buffers.labels, kept_count: buffers.keptCount, probs: buffers.probs },
    grid,
  );
}
