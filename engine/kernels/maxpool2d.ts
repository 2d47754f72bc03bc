// maxpool2d (shaders/maxpool2d.wgsl): the stem's 3x3 stride-2 pad-1 pool and the FPN's
// 1x1 stride-2 "pool" level; torch max_pool2d semantics (ceil_mode=False, -inf padding).

import source from '../../shaders/maxpool2d.wgsl';
import { nchw, sameRank, type Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { convOutputSize, type ConvShape } from './conv2d.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

export interface MaxPoolSpec {
  kernel: number;
  stride: number;
  padding: number;
}

export function maxPoolOutputShape(spec: MaxPoolSpec, input: ConvShape): ConvShape {
  if (spec.padding * 2 > spec.kernel) throw new Error(`maxpool2d: padding ${spec.padding} must be at most half the kernel ${spec.kernel} (as in torch)`);
  return {
    batch: input.batch,
    h: convOutputSize(input.h, spec.kernel, spec.stride, spec.padding, 1),
    w: convOutputSize(input.w, spec.kernel, spec.stride, spec.padding, 1),
  };
}

/** Records max_pool2d of `x` ([C, H, W] or [N, C, H, W]); returns the pooled tensor (same rank). */
export function recordMaxPool2d(rec: Recorder, spec: MaxPoolSpec, x: Tensor, label = 'maxpool2d'): Tensor {
  const ctx = rec.ctx;
  const input = nchw(x);
  const out = maxPoolOutputShape(spec, input);
  const y = rec.tensor(label, sameRank(x, input.batch, input.c, out.h, out.w));
  const kernel = ctx.kernel({ source, label });
  const planes = input.batch * input.c;
  const { grid, rowPitch } = elementGrid(ctx, planes * out.h * out.w, kernel.workgroup[0]);
  const dispatch = Dispatch.create(
    ctx,
    kernel,
    { planes, h: input.h, w: input.w, oh: out.h, ow: out.w, kernel: spec.kernel, stride: spec.stride, pad: spec.padding, row_pitch: rowPitch },
    { input: x.buffer, output: y.buffer },
    grid,
  );
  rec.record(dispatch);
  return y;
}
