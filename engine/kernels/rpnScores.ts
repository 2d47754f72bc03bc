// rpnScores (shaders/rpn_scores.wgsl): one level's objectness logits [A][H][W] -> (y, x, a) order.

import source from '../../shaders/rpn_scores.wgsl';
import type { GpuContext } from '../gpu.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

export function planRpnScores(
  ctx: GpuContext,
  shape: { anchors: number; h: number; w: number },
  buffers: { logits: GPUBuffer; scores: GPUBuffer },
  label = 'rpnScores',
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(ctx, shape.anchors * shape.h * shape.w, kernel.workgroup[0]);
  return Dispatch.create(ctx, kernel, { anchors: shape.anchors, h: shape.h, w: shape.w, row_pitch: rowPitch }, buffers, grid);
}
