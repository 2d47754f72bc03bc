// Timing helpers for benchmarks: wall-clock time of submitted work (queue drained before and
// after), repeated after warm-up, reported as the median. On CPU adapters wall time is the only
// honest clock; on GPUs the per-dispatch overhead is amortised by `inner` repetitions.

import type { GpuContext } from '../engine/gpu.ts';
import { type Dispatch, submitDispatches } from '../engine/kernels/dispatch.ts';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median milliseconds of one run of `dispatches` (each sample runs them `inner` times in one submit). */
export async function timeDispatches(
  ctx: GpuContext,
  dispatches: Dispatch[],
  opts: { warmup?: number; repeats?: number; inner?: number } = {},
): Promise<{ medianMs: number; samplesMs: number[] }> {
  const { warmup = 1, repeats = 5, inner = 1 } = opts;
  const list: Dispatch[] = [];
  for (let i = 0; i < inner; i++) list.push(...dispatches);
  for (let i = 0; i < warmup; i++) {
    submitDispatches(ctx, list);
    await ctx.device.queue.onSubmittedWorkDone();
  }
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) {
    await ctx.device.queue.onSubmittedWorkDone();
    const t0 = performance.now();
    submitDispatches(ctx, list);
    await ctx.device.queue.onSubmittedWorkDone();
    samples.push((performance.now() - t0) / inner);
  }
  return { medianMs: median(samples), samplesMs: samples };
}
