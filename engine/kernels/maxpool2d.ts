// maxpool2d (shaders/maxpool2d.wgsl): the stem's 3x3 stride-2 pad-1 pool and the FPN's
// 1x1 stride-2 "pool" level; torch max_pool2d semantics (ceil_mode=False, -inf padding).

import source from '../../shaders/maxpool2d.wgsl';
import type { GpuContext } from '../gpu.ts';
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

/** `input` is batch x channels x H x W (channels folded into batch: only planes matter). */
export function planMaxPool2d(
  ctx: GpuContext,
  spec: MaxPoolSpec,
  input: ConvShape & { channels: number },
  buffers: { input: GPUBuffer; output: GPUBuffer },
  label = 'maxpool2d',
): Dispatch {
  const out = maxPoolOutputShape(spec, input);
  const kernel = ctx.kernel({ source, label });
  const planes = input.batch * input.channels;
  const { grid, rowPitch } = elementGrid(ctx, planes * out.h * out.w, kernel.workgroup[0]);
  return Dispatch.create(
    ctx,
    kernel,
    { planes, h: input.h, w: input.w, oh: out.h, ow: out.w, kernel: spec.kernel, stride: spec.stride, pad: spec.padding, row_pitch: rowPitch },
    buffers,
    grid,
  );
}
