// channelStats (shaders/channel_stats.wgsl): per-channel mean and biased variance of an NCHW
// tensor over batch and space, as BatchNorm2d in training mode computes them. One workgroup per
// channel (Welford per invocation, Chan's pairwise merge across the workgroup). Several tensors'
// statistics can go into one buffer at channel offsets, to be read back once.

import source from '../../shaders/channel_stats.wgsl';
import { GpuError } from '../gpu.ts';
import { nchw, type Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';

/**
 * Records the statistics of `x` ([C, H, W] or [N, C, H, W]): writes (mean, var) of channel c at
 * floats 2 * (offset + c) and 2 * (offset + c) + 1 of `output` (default: a new pooled [C, 2]
 * tensor at offset 0) and returns the tensor written.
 */
export function recordChannelStats(rec: Recorder, x: Tensor, options: { output?: Tensor; offset?: number; label?: string } = {}): Tensor {
  const ctx = rec.ctx;
  const label = options.label ?? 'channel_stats';
  const { batch, c, h, w } = nchw(x);
  const offset = options.offset ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`${label}: offset ${offset} must be a non-negative integer`);
  if (batch * h * w < 1) throw new Error(`${label}: '${x.label}' has no values`);
  const out = options.output ?? rec.tensor(label, [c, 2]);
  if (out.buffer.size < (offset + c) * 8) throw new Error(`${label}: output '${out.label}' holds ${out.buffer.size / 8} channels, needs ${offset + c}`);
  const max = ctx.device.limits.maxComputeWorkgroupsPerDimension;
  if (c > max) throw new GpuError(`${label}: ${c} channels exceed this adapter's ${max} workgroups per dimension`);
  const kernel = ctx.kernel({ source, label });
  rec.record(Dispatch.create(ctx, kernel, { batch, channels: c, plane: h * w, offset }, { input: x.buffer, stats: out.buffer }, [c]));
  return out;
}
