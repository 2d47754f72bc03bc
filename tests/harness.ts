// The test harness owns the device: one GpuContext per test process, every GPU test wrapped in
// validation / out-of-memory / internal error scopes (any error fails the test), uncaptured
// errors fail the running test too, and every buffer the test allocated is destroyed after it.
// The shared context runs the tuned kernels from the first run on ('tuned' tiers): a plan never
// changes under a test because a background compile finished. tests/tiers.test.ts covers the
// library's default ('tiered': quick stand-ins, then the tuned kernels) and shows it bit-identical.

import { suite, type Test } from 'uvu';
import { GpuContext } from '../engine/gpu.ts';
import { describeAdapter } from '../engine/device.ts';

let shared: Promise<GpuContext> | undefined;
const uncaptured: string[] = [];

export function sharedContext(): Promise<GpuContext> {
  shared ??= GpuContext.create({ onUncapturedError: (e) => uncaptured.push(e.message) }).then((ctx) => {
    if (process.env.VERBOSE) console.log(`  adapter: ${describeAdapter(ctx.report)}`);
    ctx.setKernelTiers('tuned');
    return ctx;
  });
  return shared;
}

export interface GpuSuite {
  test(name: string, body: (ctx: GpuContext) => Promise<void> | void): void;
  run(): void;
}

export function gpuSuite(name: string): GpuSuite {
  const s: Test = suite(name);
  return {
    test(testName, body) {
      s(testName, async () => {
        const ctx = await sharedContext();
        const before = ctx.memory.buffers;
        const known = ctx.liveBuffers();
        uncaptured.length = 0;
        try {
          await ctx.checked(testName, () => body(ctx));
          await ctx.device.queue.onSubmittedWorkDone();
          if (uncaptured.length) throw new Error(`uncaptured WebGPU error(s): ${uncaptured.join(' | ')}`);
        } finally {
          for (const b of ctx.liveBuffers()) if (!known.has(b)) ctx.release(b);
          if (ctx.memory.buffers !== before) throw new Error(`buffer bookkeeping off: ${ctx.memory.buffers} live, ${before} before`);
        }
      });
    },
    run: () => s.run(),
  };
}
