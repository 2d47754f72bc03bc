// Timing helpers for benchmarks: wall-clock time of submitted work (queue drained before and
// after), repeated after warm-up, reported as the median. On CPU adapters wall time is the only
// honest clock; on GPUs the per-dispatch overhead is amortised by `inner` repetitions.

import type { Dispatch } from '../engine/kernels/dispatch.ts';
import type { Recorder } from '../engine/recorder.ts';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Encodes `dispatches` (recorded into `rec`, in this order, repeats allowed) into one compute pass and submits it. */
export function submitList(rec: Recorder, dispatches: readonly Dispatch[], label = rec.label): void {
  const ctx = rec.ctx;
  ctx.assertAlive();
  const encoder = ctx.device.createCommandEncoder({ label });
  const pass = encoder.beginComputePass({ label });
  rec.encode(pass, dispatches);
  pass.end();
  ctx.device.queue.submit([encoder.finish()]);
}

/**
 * Median milliseconds of one run of `dispatches` (default: all that `rec` recorded; each sample
 * runs them `inner` times in one submit).
 */
export async function timeDispatches(
  rec: Recorder,
  opts: { dispatches?: readonly Dispatch[]; warmup?: number; repeats?: number; inner?: number } = {},
): Promise<{ medianMs: number; samplesMs: number[] }> {
  const { dispatches = rec.dispatches, warmup = 1, repeats = 5, inner = 1 } = opts;
  const ctx = rec.ctx;
  const list: Dispatch[] = [];
  for (let i = 0; i < inner; i++) list.push(...dispatches);
  for (let i = 0; i < warmup; i++) {
    submitList(rec, list);
    await ctx.device.queue.onSubmittedWorkDone();
  }
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) {
    await ctx.device.queue.onSubmittedWorkDone();
    const t0 = performance.now();
    submitList(rec, list);
    await ctx.device.queue.onSubmittedWorkDone();
    samples.push((performance.now() - t0) / inner);
  }
  return { medianMs: median(samples), samplesMs: samples };
}
