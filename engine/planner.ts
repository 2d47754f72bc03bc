// Buffers reused by liveness. A plan is built in program order: each intermediate tensor is
// acquired when its producer is recorded and released after its last consumer is recorded;
// a released buffer is handed to the next tensor that fits (best fit). Dispatches in one pass
// run in order, so reusing a buffer after its last reader is safe. Physical buffers belong to the
// plan and are destroyed with it.

import type { GpuContext } from './gpu.ts';

export interface Tensor {
  buffer: GPUBuffer;
  /** Logical shape, e.g. [C, H, W]; the buffer may be larger (it was reused). */
  shape: number[];
  label: string;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Batch, channels, height and width of an image-like tensor [C, H, W] or [N, C, H, W]. */
export function nchw(t: Tensor): { batch: number; c: number; h: number; w: number } {
  const s = t.shape;
  if (s.length === 3) return { batch: 1, c: s[0], h: s[1], w: s[2] };
  if (s.length === 4) return { batch: s[0], c: s[1], h: s[2], w: s[3] };
  throw new Error(`${t.label}: expected a [C, H, W] or [N, C, H, W] tensor, got shape [${s.join(', ')}]`);
}

/** `shape` [C, H, W] or [N, C, H, W] like `like`'s rank. */
export function sameRank(like: Tensor, batch: number, c: number, h: number, w: number): number[] {
  return like.shape.length === 3 ? [c, h, w] : [batch, c, h, w];
}

export class BufferPool {
  private readonly free: GPUBuffer[] = [];
  private readonly owned = new Set<GPUBuffer>();
  private readonly inUse = new Set<GPUBuffer>();

  constructor(private readonly ctx: GpuContext) {}

  /** A tensor of `shape` f32/u32 elements (4 bytes each). */
  tensor(label: string, shape: number[], bytesPerElement = 4): Tensor {
    return { buffer: this.acquire(numel(shape) * bytesPerElement, label), shape, label };
  }

  acquire(bytes: number, label: string): GPUBuffer {
    const need = Math.max(16, Math.ceil(bytes / 16) * 16);
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = this.free[i].size;
      if (size >= need && (best < 0 || size < this.free[best].size)) best = i;
    }
    if (best >= 0 && this.free[best].size <= need * 4) {
      const [b] = this.free.splice(best, 1);
      this.inUse.add(b);
      return b;
    }
    const b = this.ctx.createBuffer(`pool:${label}`, need);
    this.owned.add(b);
    this.inUse.add(b);
    return b;
  }

  release(...tensors: Array<Tensor | undefined>): void {
    for (const t of tensors) {
      if (!t) continue;
      if (!this.inUse.delete(t.buffer)) throw new Error(`buffer pool: '${t.label}' released twice or not from this pool`);
      this.free.push(t.buffer);
    }
  }

  get stats(): { buffers: number; bytes: number } {
    let bytes = 0;
    for (const b of this.owned) bytes += b.size;
    return { buffers: this.owned.size, bytes };
  }

  destroy(): void {
    for (const b of this.owned) this.ctx.release(b);
    this.owned.clear();
    this.inUse.clear();
    this.free.length = 0;
  }
}
