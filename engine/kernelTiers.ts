// The context's record of kernel tiers (engine/tiers.ts has the why): which variant plans take,
// which tuned kernels the driver is known to have compiled, and which ones quick stand-ins replaced
// and so wait for a compile. GpuContext holds one and delegates to it.

import { fnv1a } from './hash.ts';
import type { KernelSpec } from './gpu.ts';

/**
 * Which variant of a tuned kernel (conv, matmul) plans use. 'tuned': always the tuned tile, however
 * long the driver takes to compile it at first use. 'quick': always the small tile that compiles
 * about 10x faster and runs about 2x slower. 'tiered' (default): the tuned variant once it is known
 * compiled (made on this context, or listed by `addCompiledKernels`), a quick stand-in until then.
 * Every variant gives bit-identical results (each output sums its terms in the same order), except
 * that a Winograd tile (engine/kernels/winograd.ts, where `npm run tune` chose one) rounds
 * differently from its direct stand-in: those outputs agree within Winograd's stated error bound.
 */
export type KernelTiers = 'tiered' | 'tuned' | 'quick';

/** A kernel's identity: entry point, constants and source (stable across processes: what io/kernelCache.ts stores). */
export function kernelKey(spec: KernelSpec): string {
  const consts = spec.consts ?? {};
  const constKey = Object.keys(consts)
    .sort()
    .map((k) => `${k}=${consts[k]}`)
    .join(',');
  return `${spec.entryPoint ?? 'main'}|${constKey}|${fnv1a(spec.source)}:${spec.source.length}`;
}

export class TierBook {
  mode: KernelTiers = 'tiered';
  /** Keys of kernels the driver is known to have compiled (or to hold in its cache) for this adapter. */
  private readonly compiled = new Set<string>();
  /** Tuned kernels a quick stand-in replaced, by key, until they are compiled. */
  private readonly wanted = new Map<string, KernelSpec>();
  private standIns = 0;
  private generation = 0;

  setMode(mode: KernelTiers): void {
    if (mode !== 'tiered' && mode !== 'tuned' && mode !== 'quick') throw new Error(`kernel tiers '${mode}' is not 'tiered', 'tuned' or 'quick'`);
    this.mode = mode;
  }

  /**
   * The variant to use; `made(key)` tells whether the context already holds that pipeline.
   * `specsFor` gives every kernel a variant dispatches (a sort's several entry points): the tuned
   * variant is taken only when all of them are compiled, and otherwise all of them are wanted.
   */
  choose<T>(tuned: T, quick: T, specsFor: (variant: T) => KernelSpec | KernelSpec[], made: (key: string) => boolean): T {
    if (this.mode !== 'tiered') return this.mode === 'tuned' ? tuned : quick;
    const all = (v: T) => [specsFor(v)].flat();
    const specs = all(tuned);
    const keys = specs.map(kernelKey);
    const quickKeys = new Set(all(quick).map(kernelKey));
    if (keys.every((key) => made(key) || this.compiled.has(key) || quickKeys.has(key))) return tuned;
    specs.forEach((spec, i) => {
      if (!made(keys[i]) && !this.compiled.has(keys[i])) this.wanted.set(keys[i], spec);
    });
    this.standIns++;
    return quick;
  }

  wantedKernels(): Array<{ key: string; spec: KernelSpec }> {
    return [...this.wanted].filter(([key]) => !this.compiled.has(key)).map(([key, spec]) => ({ key, spec }));
  }

  addCompiled(keys: Iterable<string>): void {
    let added = false;
    for (const key of keys) {
      if (typeof key !== 'string') throw new Error(`compiled kernel keys are strings (got ${typeof key})`);
      if (!this.compiled.has(key)) {
        this.compiled.add(key);
        added = true;
      }
    }
    if (added) this.generation++;
  }

  compiledKeys(): string[] {
    return [...this.compiled];
  }

  /**
   * Counters a plan snapshots when it is built: it used stand-ins when `standIns` moved, and is
   * stale once `generation` moves (better kernels became available).
   */
  get state(): { standIns: number; generation: number } {
    return { standIns: this.standIns, generation: this.generation };
  }
}
