// The GPU side of calibration's multi-pass work: recording a pass for one image into its own
// Recorder, submitting it, and keeping chosen outputs alive after the recorder is destroyed (the
// activations a later pass starts from), plus the accumulation of one or more layers' normal
// equations over every image followed by their float64 solves. Every buffer it allocates is
// released by destroy(), whatever failed.

import type { GpuContext } from '../engine/gpu.ts';
import { normalEquationsSize, recordNormalEquations, type NormalEquationsSpec } from '../engine/kernels/normalEquations.ts';
import type { Tensor as GpuTensor } from '../engine/planner.ts';
import { Recorder } from '../engine/recorder.ts';
import { nonFinite } from './calibrationOptions.ts';
import { solveRidge, type RidgeSolution } from './ridge.ts';

/** A tensor copied out of a recorder's pool, alive until dropped. */
export interface Kept {
  tensor: GpuTensor;
}

/** What one layer's fit records for one image: the layer's input, its target (minus a base). */
export interface FitSample {
  input: GpuTensor;
  target: GpuTensor;
  base?: GpuTensor;
}

export interface FitJob {
  name: string;
  spec: NormalEquationsSpec;
  /**
   * Records what the fit needs for image `i` (possibly several samples, e.g. one per FPN level)
   * and the pooled tensors to release once the normal equations are recorded.
   */
  record: (rec: Recorder, i: number, computed: Record<string, GpuTensor>) => { samples: FitSample[]; release: GpuTensor[] };
  /** [M][F] weights in use (for the reported gain), if known. */
  current?: Float64Array;
}

export class GpuPasses {
  private readonly owned = new Set<GPUBuffer>();

  constructor(readonly ctx: GpuContext) {}

  /** Records with `fn`, submits, and copies the returned tensors into buffers that outlive the recorder. */
  async run<T extends Record<string, GpuTensor>>(what: string, fn: (rec: Recorder) => T | void): Promise<Record<keyof T, Kept>> {
    const ctx = this.ctx;
    const rec = new Recorder(ctx, what);
    try {
      return await ctx.checked(what, async () => {
        const outs = fn(rec) ?? ({} as T);
        const enc = ctx.device.createCommandEncoder({ label: what });
        const pass = enc.beginComputePass({ label: what });
        rec.encode(pass);
        pass.end();
        const kept = Object.fromEntries(Object.entries(outs).map(([k, v]) => [k, this.copy(enc, v, `${what} ${k}`)])) as Record<keyof T, Kept>;
        ctx.device.queue.submit([enc.finish()]);
        await ctx.device.queue.onSubmittedWorkDone();
        return kept;
      });
    } finally {
      rec.destroy();
    }
  }

  private copy(enc: GPUCommandEncoder, x: GpuTensor, label: string): Kept {
    const size = x.shape.reduce((a, b) => a * b, 1) * 4;
    const buffer = this.buffer(label, size);
    enc.copyBufferToBuffer(x.buffer, 0, buffer, 0, size);
    return { tensor: { buffer, shape: [...x.shape], label } };
  }

  /** A zeroed buffer owned until dropped (or destroy()). */
  buffer(label: string, bytes: number): GPUBuffer {
    const buffer = this.ctx.createBuffer(label, bytes);
    this.owned.add(buffer);
    return buffer;
  }

  drop(k: Kept | GPUBuffer): void {
    const b = 'tensor' in k ? k.tensor.buffer : k;
    this.owned.delete(b);
    this.ctx.release(b);
  }

  /**
   * Accumulates the normal equations of every job over `images` images (one pass, each image's
   * work one submit; at most `positions` evenly spaced output positions per sample, shifted from
   * image to image), then solves each in float64 with the relative `ridge`. A job no position
   * reached (e.g. a head with no RoIs on any image) gets undefined. `keep` records, first in each
   * image's pass, tensors the jobs read (its third argument) and that are kept for later passes.
   */
  async fit(
    jobs: FitJob[],
    images: number,
    o: { positions: number; ridge: number; label: string; tick: () => void; keep?: (rec: Recorder, i: number) => Record<string, GpuTensor> },
  ): Promise<{ solutions: Array<RidgeSolution | undefined>; kept: Array<Record<string, Kept>> }> {
    const grams = jobs.map((j) => {
      const size = normalEquationsSize(j.spec);
      const buffer = this.buffer(`${j.name} normal equations`, size.features * size.columns * 4);
      return { size, gram: { buffer, shape: [size.features, size.columns], label: `${j.name} normal equations` } as GpuTensor };
    });
    try {
      const kept: Array<Record<string, Kept>> = [];
      for (let i = 0; i < images; i++) {
        kept.push(await this.run(`${o.label} (image ${i})`, (rec) => {
          const computed = o.keep?.(rec, i) ?? {};
          jobs.forEach((job, k) => {
            const { samples, release } = job.record(rec, i, computed);
            for (const s of samples) {
              // Neighbouring positions are nearly collinear: evenly spaced ones carry the information.
              const count = s.target.shape.reduce((a, b) => a * b, 1) / job.spec.targets;
              const step = Math.max(1, Math.floor(count / o.positions));
              recordNormalEquations(rec, job.spec, { ...s, gram: grams[k].gram }, `${job.name} normal equations`, { step, offset: i % step });
            }
            rec.release(...release);
          });
          return computed;
        }));
        o.tick();
      }
      const solutions: Array<RidgeSolution | undefined> = [];
      for (const [k, job] of jobs.entries()) {
        const { features, columns } = grams[k].size;
        const gram = await this.ctx.readF32(grams[k].gram.buffer, features * columns);
        if (!gram.every(Number.isFinite)) throw nonFinite(`the least-squares statistics of '${job.name}' are not finite`);
        solutions.push(gram[(features - 1) * columns + features - 1] > 0 ? solveRidge(gram, features, job.spec.targets, o.ridge, job.current) : undefined);
      }
      return { solutions, kept };
    } finally {
      for (const g of grams) this.drop(g.gram.buffer);
    }
  }

  destroy(): void {
    for (const b of this.owned) this.ctx.release(b);
    this.owned.clear();
  }
}
