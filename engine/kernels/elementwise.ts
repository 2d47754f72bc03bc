// Grid for kernels with one invocation per output value: a 1-D count split over (x, y) when it
// exceeds the per-dimension workgroup limit; the shader rebuilds the index with `row_pitch`.

import { grid1d, type GpuContext } from '../gpu.ts';

export function elementGrid(ctx: GpuContext, count: number, workgroupSize: number): { grid: [number, number]; rowPitch: number } {
  const grid = grid1d(Math.ceil(count / workgroupSize), ctx.device.limits.maxComputeWorkgroupsPerDimension);
  return { grid, rowPitch: grid[0] * workgroupSize };
}
