// The plan recorder: what every stage and kernel wrapper records into while a model (or a test,
// or a benchmark) is planned for one input size. It owns the buffer pool (intermediate tensors
// reused by liveness, engine/planner.ts), the dispatch list in program order, the objects that
// must live as long as the plan (scratch buffers, uploaded constants) and the stage marks. A
// wrapper's `record(rec, ...inputs)` records its dispatches and returns its output tensor(s); the
// caller releases a tensor after its last consumer is recorded. Running a plan only encodes the
// recorded dispatches (one pass, or one pass per stage) and submits once.

import type { GpuContext } from './gpu.ts';
import type { Dispatch } from './kernels/dispatch.ts';
import { BufferPool, type Tensor } from './planner.ts';

/** GPU objects that live as long as one plan. */
export interface Destroyable {
  destroy(): void;
}

export class Recorder {
  readonly pool: BufferPool;
  private readonly recorded: Dispatch[] = [];
  private readonly owned: Destroyable[] = [];
  private readonly marks = new Map<string, number>();
  private destroyed = false;

  constructor(
    readonly ctx: GpuContext,
    readonly label = 'plan',
  ) {
    this.pool = new BufferPool(ctx);
  }

  /** A pooled tensor of `shape` 4-byte elements; release it after its last consumer is recorded. */
  tensor(label: string, shape: number[]): Tensor {
    return this.pool.tensor(label, shape);
  }

  release(...tensors: Array<Tensor | undefined>): void {
    this.pool.release(...tensors);
  }

  /** A tensor holding `data` (uploaded now), owned by the plan: constants, test inputs. */
  input(label: string, data: Float32Array | Uint32Array | Int32Array, shape: number[] = [data.length]): Tensor {
    const count = shape.reduce((a, b) => a * b, 1);
    if (count > data.length) throw new Error(`${label}: shape [${shape.join(', ')}] needs ${count} values, the data has ${data.length}`);
    const buffer = this.ctx.upload(label, data);
    this.keep({ destroy: () => this.ctx.release(buffer) });
    return { buffer, shape, label };
  }

  /** An empty (uninitialised) tensor owned by the plan, never reused by the pool: plan outputs read back later. */
  output(label: string, shape: number[]): Tensor {
    const buffer = this.ctx.createBuffer(label, shape.reduce((a, b) => a * b, 1) * 4);
    this.keep({ destroy: () => this.ctx.release(buffer) });
    return { buffer, shape, label };
  }

  record(...dispatches: Dispatch[]): void {
    this.recorded.push(...dispatches);
  }

  /** Ties `object`'s lifetime to the plan's. */
  keep<T extends Destroyable>(object: T): T {
    this.owned.push(object);
    return object;
  }

  /** Marks where stage `name` begins: the next recorded dispatch is its first. */
  stage(name: string): void {
    if (this.marks.has(name)) throw new Error(`${this.label}: stage '${name}' was marked twice`);
    this.marks.set(name, this.recorded.length);
  }

  get dispatches(): readonly Dispatch[] {
    return this.recorded;
  }

  /** The dispatches split by stage, in the order of `names`; every stage must have been marked, in that order. */
  stages(names: readonly string[]): Dispatch[][] {
    const starts = names.map((s) => {
      const at = this.marks.get(s);
      if (at === undefined) throw new Error(`${this.label}: stage '${s}' was never marked`);
      return at;
    });
    if (starts[0] !== 0 || starts.some((s, i) => i > 0 && s < starts[i - 1])) {
      throw new Error(`${this.label}: stage marks out of order: ${names.map((s, i) => `${s}@${starts[i]}`).join(' ')}`);
    }
    return starts.map((s, i) => this.recorded.slice(s, starts[i + 1] ?? this.recorded.length));
  }

  /** Records `dispatches` (default: all) into `pass`. */
  encode(pass: GPUComputePassEncoder, dispatches: readonly Dispatch[] = this.recorded): void {
    for (const d of dispatches) d.record(pass);
  }

  /** Encodes every recorded dispatch into one compute pass and submits it (tests, benchmarks). */
  submit(label = this.label): void {
    this.ctx.assertAlive();
    const encoder = this.ctx.device.createCommandEncoder({ label });
    const pass = encoder.beginComputePass({ label });
    this.encode(pass);
    pass.end();
    this.ctx.device.queue.submit([encoder.finish()]);
  }

  /** Frees the uniforms of every dispatch, every kept object and the pool's buffers. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const d of this.recorded) d.destroy();
    for (const o of this.owned) o.destroy();
    this.pool.destroy();
    this.recorded.length = 0;
    this.owned.length = 0;
  }
}
