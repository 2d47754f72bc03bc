// Kernel tiers: what a first run compiles. The tuned conv and matmul tiles (16x8 per invocation on
// a CPU adapter) are the fastest to run and the slowest to compile: lavapipe's LLVM spends seconds
// on each specialised variant at its first dispatch (bench/NOTES.md 14). Under the context's
// 'tiered' setting a plan takes a quick variant (4x4 per invocation: about 10x faster to compile,
// about 2x slower to run, bit-identical results) for every tuned kernel the driver has not compiled
// yet, and `compileWantedKernels` compiles the tuned ones afterwards, on a second device so that the
// first device's queue stays free; plans built after that use them. A compile reaches the driver's
// own cache (Mesa's disk cache, a browser's pipeline cache), so an application that records the
// compiled keys (io/kernelCache.ts in Node) starts its next process on the tuned tier at once.

import type { GpuContext, KernelSpec } from './gpu.ts';
import { Dispatch } from './kernels/dispatch.ts';
import type { ConvTile } from './kernels/convTiling.ts';
import type { MatmulTile } from './kernels/matmul.ts';

/** The stand-in conv tile: 4 channels x 4 pixels per invocation, 32 invocations along pixels. */
export const QUICK_CONV_TILE: ConvTile = { tm: 4, tn: 4, wgX: 32, wgY: 1 };
/** The stand-in matmul tile. */
export const QUICK_MATMUL_TILE: MatmulTile = { tm: 4, tn: 4, wgX: 8, wgY: 8 };
/**
 * The stand-in sort tile: 64 elements (512 bytes of workgroup memory) sorted by 32 invocations,
 * the rest of the network in global compare-exchange passes. Chromium's GL path (Tint -> GLSL ->
 * ANGLE -> SPIR-V -> the driver) spends time in proportion to a shader's workgroup memory: about
 * 2.7 s for the tuned 2048-element tile's 16 KiB on lavapipe, 0.5 s for 4 KiB (bench/NOTES.md 18).
 */
export const QUICK_SORT_TILE = { block: 64, wg: 32 } as const;
/** The stand-in NMS block (kept boxes read through storage, shaders/nms.wgsl). */
export const QUICK_NMS_WG = 32;

export interface CompileReport {
  /** Kernels compiled. */
  compiled: number;
  /** Wall time of the compiles, ms. */
  ms: number;
  /** 'second device' when a device of its own did the work, 'same device' otherwise. */
  where: 'second device' | 'same device';
}

/**
 * Makes the driver compile `specs` on `target` now: each pipeline is created and dispatched once,
 * one workgroup over zero sizes (every tiered kernel returns at once when its output is empty, so
 * nothing is written), because some drivers (lavapipe) compile at the first dispatch rather than
 * at pipeline creation. Returns when the device has finished.
 */
export async function compileKernels(target: GpuContext, specs: KernelSpec[]): Promise<void> {
  const scratch: GPUBuffer[] = [];
  const dispatches: Dispatch[] = [];
  try {
    await target.checked('compiling kernels', async () => {
      for (const spec of specs) {
        const kernel = target.kernel(spec);
        const resources: Record<string, GPUBuffer> = {};
        for (const b of kernel.bindings) {
          if (b.name === 'params') continue;
          const buffer = target.createBuffer(`compile ${spec.label}.${b.name}`, 256);
          scratch.push(buffer);
          resources[b.name] = buffer;
        }
        const zeros = kernel.params ? Object.fromEntries(kernel.params.fields.map((f) => [f.name, 0])) : undefined;
        dispatches.push(Dispatch.create(target, kernel, zeros, resources, [1, 1, 1], `compile ${spec.label}`));
      }
      // One submit per kernel: the driver's queue thread compiles them one after the other anyway,
      // and a lost device fails on the first rather than after all.
      for (const d of dispatches) {
        const encoder = target.device.createCommandEncoder({ label: 'compile kernels' });
        const pass = encoder.beginComputePass();
        d.record(pass);
        pass.end();
        target.device.queue.submit([encoder.finish()]);
      }
      await target.device.queue.onSubmittedWorkDone();
    });
  } finally {
    for (const d of dispatches) d.destroy();
    for (const b of scratch) target.release(b);
  }
}

/**
 * Compiles the tuned kernels `ctx`'s plans replaced by quick stand-ins, on a second device acquired
 * like `ctx`'s (the same device when `ctx` wraps an application's device or no second one can be
 * had), and marks them compiled on `ctx`: plans built from then on use them. Resolves with what it
 * did; compiles nothing when nothing is wanted.
 */
export async function compileWantedKernels(ctx: GpuContext, options: { device?: 'second' | 'same' } = {}): Promise<CompileReport> {
  const wanted = ctx.wantedKernels();
  const started = performance.now();
  if (!wanted.length) return { compiled: 0, ms: 0, where: 'same device' };
  let target = ctx;
  if ((options.device ?? 'second') === 'second' && ctx.acquireAnother) {
    try {
      target = await ctx.acquireAnother();
    } catch {
      target = ctx;
    }
  }
  try {
    await compileKernels(
      target,
      wanted.map((w) => w.spec),
    );
  } finally {
    if (target !== ctx) {
      target.destroy();
      target.device.destroy();
    }
  }
  ctx.addCompiledKernels(wanted.map((w) => w.key));
  return { compiled: wanted.length, ms: performance.now() - started, where: target === ctx ? 'same device' : 'second device' };
}
