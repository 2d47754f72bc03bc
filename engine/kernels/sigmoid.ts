// sigmoid (shaders/sigmoid.wgsl): elementwise torch.sigmoid, out of place.

import source from '../../shaders/sigmoid.wgsl';
import type { GpuContext } from '../gpu.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

export function planSigmoid(ctx: GpuContext, count: number, buffers: { input: GPUBuffer; output: GPUBuffer }, label = 'sigmoid'): Dispatch {
  const kernel = ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(ctx, count, kernel.workgroup[0]);
  return Dispatch.create(ctx, kernel, { count, row_pitch: rowPitch }, buffers, grid);
}
