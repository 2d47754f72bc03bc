// A recorded unit of GPU work: one pipeline, its bind group, its uniform buffer and a grid.
// Kernel wrappers create Dispatches once per planned input size and record them into a plan
// (engine/recorder.ts); running a plan only encodes them into a pass.

import { GpuError, type GpuContext, type Kernel, type KernelSpec } from '../gpu.ts';

export class Dispatch {
  private constructor(
    readonly label: string,
    private readonly kernel: Kernel,
    private readonly bindGroup: GPUBindGroup,
    private readonly workgroups: [number, number, number],
    private readonly owned: GPUBuffer[],
    private readonly ctx: GpuContext,
  ) {}

  /** Packs `params` by the kernel's WGSL struct and binds `resources` by their WGSL names. */
  static create(
    ctx: GpuContext,
    kernel: Kernel,
    params: Record<string, number> | undefined,
    resources: Record<string, GPUBuffer>,
    workgroups: [number, number?, number?],
    label = kernel.label,
  ): Dispatch {
    const grid: [number, number, number] = [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1];
    const max = ctx.device.limits.maxComputeWorkgroupsPerDimension;
    if (grid.some((g) => g > max)) {
      throw new GpuError(`${label}: a grid of ${grid.join('x')} workgroups exceeds this adapter's limit of ${max} per dimension; use a smaller input`);
    }
    const owned: GPUBuffer[] = [];
    const all = { ...resources };
    if (params) {
      const uniform = ctx.params(kernel, params);
      owned.push(uniform);
      all.params = uniform;
    }
    return new Dispatch(label, kernel, ctx.bindGroup(kernel, all), grid, owned, ctx);
  }

  /** The kernel's spec (to compile it elsewhere ahead of this dispatch, engine/tiers.ts). */
  get spec(): KernelSpec {
    return this.kernel.spec;
  }

  get grid(): readonly [number, number, number] {
    return this.workgroups;
  }

  record(pass: GPUComputePassEncoder): void {
    if (this.workgroups.some((g) => g === 0)) return;
    pass.setPipeline(this.kernel.pipeline);
    pass.setBindGroup(0, this.bindGroup);
    pass.dispatchWorkgroups(...this.workgroups);
  }

  destroy(): void {
    for (const b of this.owned) this.ctx.release(b);
    this.owned.length = 0;
  }
}

export const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);
