// upsampleNearestAdd (shaders/upsample_nearest_add.wgsl): the FPN top-down merge
// lateral + interpolate(top, size=lateral size, mode="nearest"), any sizes (odd ones included).

import source from '../../shaders/upsample_nearest_add.wgsl';
import { nchw, type Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

/** Records lateral + nearest(top) (both [C, H, W] or [N, C, H, W]); returns the sum, lateral's shape. */
export function recordUpsampleNearestAdd(rec: Recorder, lateral: Tensor, top: Tensor, label = 'upsampleNearestAdd'): Tensor {
  const l = nchw(lateral);
  const t = nchw(top);
  if (l.batch !== t.batch || l.c !== t.c) throw new Error(`${label}: '${lateral.label}' [${lateral.shape}] and '${top.label}' [${top.shape}] differ in batch or channels`);
  const output = rec.tensor(label, lateral.shape);
  const planes = l.batch * l.c;
  const kernel = rec.ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(rec.ctx, planes * l.h * l.w, kernel.workgroup[0]);
  rec.record(
    Dispatch.create(
      rec.ctx,
      kernel,
      {
        planes,
        h: l.h,
        w: l.w,
        top_h: t.h,
        top_w: t.w,
        // torch: (float)input_size / output_size, in float32.
        scale_h: Math.fround(t.h / l.h),
        scale_w: Math.fround(t.w / l.w),
        row_pitch: rowPitch,
      },
      { lateral: lateral.buffer, top: top.buffer, output: output.buffer },
      grid,
    ),
  );
  return output;
}
