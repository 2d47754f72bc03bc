// upsampleNearestAdd (shaders/upsample_nearest_add.wgsl): the FPN top-down merge
// lateral + interpolate(top, size=lateral size, mode="nearest"), any sizes (odd ones included).

import source from '../../shaders/upsample_nearest_add.wgsl';
import type { GpuContext } from '../gpu.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

export function planUpsampleNearestAdd(
  ctx: GpuContext,
  shape: { planes: number; h: number; w: number; topH: number; topW: number },
  buffers: { lateral: GPUBuffer; top: GPUBuffer; output: GPUBuffer },
  label = 'upsampleNearestAdd',
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(ctx, shape.planes * shape.h * shape.w, kernel.workgroup[0]);
  return Dispatch.create(
    ctx,
    kernel,
    {
      planes: shape.planes,
      h: shape.h,
      w: shape.w,
      top_h: shape.topH,
      top_w: shape.topW,
      // torch: (float)input_size / output_size, in float32.
      scale_h: Math.fround(shape.topH / shape.h),
      scale_w: Math.fround(shape.topW / shape.w),
      row_pitch: rowPitch,
    },
    buffers,
    grid,
  );
}
