// l1Norms (shaders/l1_norms.wgsl): the L1 norm of every output filter (or every k x k kernel) of
// every layer of a model in one pass over the weights. Each tensor is viewed as `count`
// consecutive segments of `size` values (a conv weight [Cout][Cin][KH][KW] is Cout filters of
// Cin*KH*KW values, or Cout*Cin kernels of KH*KW values). The tensors are packed into as few
// storage buffers as the adapter's binding limit allows (one dispatch each); a tensor larger than
// a buffer is split between segments. Semantics: Li et al. 2017, sum of |w| per filter.

import source from '../../shaders/l1_norms.wgsl';
import { GpuError, type GpuContext } from '../gpu.ts';
import { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

/** A tensor viewed as `count` consecutive segments of `size` values (data.length = size * count). */
export interface SegmentedTensor {
  data: Float32Array;
  size: number;
  count: number;
}

/** One contiguous stretch of equal segments inside a packed weight buffer. */
export interface NormRun {
  /** First value, in floats from the start of the packed buffer. */
  offset: number;
  size: number;
  count: number;
  /** Index of the run's first norm among this buffer's norms. */
  start: number;
}

interface PackedChunk {
  floats: number;
  /** Pieces of tensors: [tensor index, first segment, segments]. */
  pieces: Array<{ tensor: number; first: number; segments: number; offset: number }>;
  runs: NormRun[];
  /** Index of this chunk's first norm in the whole output. */
  outBase: number;
  segments: number;
}

/**
 * Lays tensors out in buffers of at most `maxFloats` floats, in order; a tensor that does not fit
 * in what is left of a buffer starts a new one, and one larger than a whole buffer is split
 * between segments. Norms come out in tensor order, segment order.
 */
export function packSegments(tensors: SegmentedTensor[], maxFloats: number): PackedChunk[] {
  const chunks: PackedChunk[] = [];
  let cur: PackedChunk | undefined;
  let outBase = 0;
  tensors.forEach((t, index) => {
    if (t.data.length !== t.size * t.count) {
      throw new Error(`l1Norms: tensor ${index} has ${t.data.length} values, not ${t.count} segments of ${t.size}`);
    }
    if (t.size > maxFloats) {
      throw new GpuError(`l1Norms: a segment of ${t.size} values does not fit in one storage buffer of ${maxFloats} floats`);
    }
    let first = 0;
    while (first < t.count) {
      if (!cur || cur.floats + t.size > maxFloats) {
        cur = { floats: 0, pieces: [], runs: [], outBase, segments: 0 };
        chunks.push(cur);
      }
      const segments = Math.min(t.count - first, Math.floor((maxFloats - cur.floats) / t.size));
      cur.pieces.push({ tensor: index, first, segments, offset: cur.floats });
      cur.runs.push({ offset: cur.floats, size: t.size, count: segments, start: cur.segments });
      cur.floats += segments * t.size;
      cur.segments += segments;
      outBase += segments;
      first += segments;
    }
  });
  return chunks.filter((c) => c.segments > 0);
}

/** One dispatch over one packed buffer: `norms` must hold at least outBase + segments floats. */
function l1NormsDispatch(
  ctx: GpuContext,
  chunk: { runs: NormRun[]; segments: number; outBase: number },
  buffers: { weights: GPUBuffer; runs: GPUBuffer; norms: GPUBuffer },
  label = 'l1_norms',
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(ctx, chunk.segments, kernel.workgroup[0]);
  return Dispatch.create(ctx, kernel, { segments: chunk.segments, runs: chunk.runs.length, out_base: chunk.outBase, row_pitch: rowPitch }, buffers, grid);
}

export function packRuns(runs: NormRun[]): Uint32Array {
  const table = new Uint32Array(runs.length * 4);
  runs.forEach((r, i) => table.set([r.offset, r.size, r.count, r.start], i * 4));
  return table;
}

/**
 * The L1 norm of every segment of every tensor, computed on the GPU; returns one Float32Array of
 * `count` norms per tensor. `maxChunkFloats` caps a packed buffer (default: the adapter's storage
 * binding limit); tests lower it to exercise splitting.
 */
export async function l1Norms(ctx: GpuContext, tensors: SegmentedTensor[], options: { maxChunkFloats?: number } = {}): Promise<Float32Array[]> {
  const limits = ctx.device.limits;
  const bindingFloats = Math.floor(Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) / 4);
  const maxFloats = Math.min(options.maxChunkFloats ?? bindingFloats, bindingFloats);
  const chunks = packSegments(tensors, maxFloats);
  const total = chunks.reduce((s, c) => s + c.segments, 0);
  if (total * 4 > limits.maxStorageBufferBindingSize) {
    throw new GpuError(`l1Norms: ${total} norms do not fit in one storage binding (${limits.maxStorageBufferBindingSize} bytes)`);
  }
  const out = tensors.map((t) => new Float32Array(t.count));
  if (total === 0) return out;
  const norms = ctx.createBuffer('l1_norms.out', total * 4);
  try {
    // One chunk at a time keeps at most one packed copy of the weights on the GPU.
    for (const chunk of chunks) {
      const packed = new Float32Array(chunk.floats);
      for (const p of chunk.pieces) {
        const t = tensors[p.tensor];
        packed.set(t.data.subarray(p.first * t.size, (p.first + p.segments) * t.size), p.offset);
      }
      const rec = new Recorder(ctx, 'l1_norms');
      try {
        const weights = rec.input('l1_norms.weights', packed);
        const runs = rec.input('l1_norms.runs', packRuns(chunk.runs));
        rec.record(l1NormsDispatch(ctx, chunk, { weights: weights.buffer, runs: runs.buffer, norms }));
        rec.submit();
        await ctx.device.queue.onSubmittedWorkDone();
      } finally {
        rec.destroy();
      }
    }
    const all = await ctx.readF32(norms, total);
    let pos = 0;
    for (const chunk of chunks) {
      for (const p of chunk.pieces) {
        out[p.tensor].set(all.subarray(pos, pos + p.segments), p.first);
        pos += p.segments;
      }
    }
    return out;
  } finally {
    ctx.release(norms);
  }
}
