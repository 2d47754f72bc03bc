// SortDescending (shaders/sort.wgsl, shaders/sort_common.wgsl; TopK, the selection on the same
// network, is in sortTopk.ts): torch.sort(scores, descending=True, stable=True) of up to
// `maxN` f32 scores, with the number of live scores read from a GPU buffer at run time, so the
// RPN and box-head post-processing never wait for the CPU. Exact: only integer compares of keys.
//
// Order: score descending; ties by value ascending, where value is the element's index unless a
// values buffer is given (index order = torch's stable sort). NaN is treated as -inf (torch puts
// NaN first; the detector never produces NaN scores, and -inf-like is the safe place for garbage)
// and -0 as +0 (torch: -0 == +0, so they tie); out_keys then holds -inf for NaN and +0 for -0.
// Elements at positions >= count, or with valid[i] == 0, are left out; output slots past the
// live elements hold key -inf and value 0xffffffff, and outCount holds the number of live ones.
//
// Plan-once (as TopK): the constructor allocates scratch for `maxN`; record() binds the
// tensors and records the dispatches into a plan. Recordings of one instance share its scratch:
// record them one after the other, never interleaved.
//
// Cost: SortDescending is a bitonic sort over P = the padded power of two, with the stages that
// fit a 2048-element tile run in workgroup memory: with L = log2(P / 2048), one tile sort, L tile
// merges, L(L+1)/2 global compare-exchange passes and one emit (37 dispatches for 200k), about
// P log2(P)^2 / 4 compare-exchanges.
//
// Under the context's kernel tiers (engine/tiers.ts) a first run takes QUICK_SORT_TILE (64
// elements) until the tuned tile's kernels are compiled: same network, more global passes;
// identical outputs (only compares).

import common from '../../shaders/sort_common.wgsl';
import sortBody from '../../shaders/sort.wgsl';
import type { GpuContext, Kernel, KernelSpec } from '../gpu.ts';
import { QUICK_SORT_TILE } from '../tiers.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

const SORT_SOURCE = `${common}\n${sortBody}`;

/** Largest n a plan accepts: the padded scratch (8 bytes per element) stays under 128 MiB. */
export const MAX_SORT_ELEMENTS = 1 << 24;

/** What a sort reads and writes (outputs are written in place, at outOffset when given). */
export interface SortTensors {
  /** f32[n] scores. */
  keys: Tensor;
  /** u32[n] payloads that tie-break and come out in outValues; default: the element's index. */
  values?: Tensor;
  /** u32[n], 0 = leave the element out (e.g. the box head's score/size filter). */
  valid?: Tensor;
  /** u32 whose first element is the number of live elements (clamped to n); default: n. */
  count?: Tensor;
  /** f32 sorted scores. */
  outKeys?: Tensor;
  /** u32 values in sorted order. */
  outValues: Tensor;
  /** u32[1]: the number of live elements written (at most outLimit). */
  outCount?: Tensor;
}

/** @internal shared with sortTopk.ts */
export function sortBuffers(t: SortTensors): SortBuffers {
  return {
    keys: t.keys.buffer,
    values: t.values?.buffer,
    valid: t.valid?.buffer,
    count: t.count?.buffer,
    outKeys: t.outKeys?.buffer,
    outValues: t.outValues.buffer,
    outCount: t.outCount?.buffer,
  };
}

/** @internal shared with sortTopk.ts */
export interface SortBuffers {
  /** f32[n] scores. */
  keys: GPUBuffer;
  /** u32[n] payloads that tie-break and come out in outValues; default: the element's index. */
  values?: GPUBuffer;
  /** u32[n], 0 = leave the element out (e.g. the box head's score/size filter). */
  valid?: GPUBuffer;
  /** u32 whose first element is the number of live elements (clamped to n); default: n. */
  count?: GPUBuffer;
  /** f32 sorted scores. */
  outKeys?: GPUBuffer;
  /** u32 values in sorted order. */
  outValues: GPUBuffer;
  /** u32[1]: the number of live elements written (at most outLimit). */
  outCount?: GPUBuffer;
}

export interface SortOptions {
  /** Elements to sort; default maxN. */
  n?: number;
  /**
   * Element of keys / values / valid that is element 0 (to sort one slice of a bigger buffer,
   * e.g. one FPN level); the default value of an element stays its index within the slice.
   */
  inOffset?: number;
  /** Write only the first outLimit sorted elements (default n). */
  outLimit?: number;
  /** Element offset of the first output in outKeys / outValues (to fill one slice of a bigger buffer). */
  outOffset?: number;
}

export const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** A sort tile: elements sorted in workgroup memory, and the invocations that sort them. */
export interface SortTile {
  block: number;
  wg: number;
}

/** The tuned tile: the largest of up to 2048 elements that fits this device's workgroup limits. */
/** @internal shared with sortTopk.ts */
export function tunedTile(ctx: GpuContext): SortTile {
  const limits = ctx.device.limits;
  let block = 2048;
  while (block * 8 > limits.maxComputeWorkgroupStorageSize) block /= 2;
  const wg = Math.min(256, block / 2, limits.maxComputeInvocationsPerWorkgroup);
  return { block, wg };
}

/** The quick stand-in (engine/tiers.ts), never larger than the tuned tile. */
/** @internal shared with sortTopk.ts */
export function quickTile(tuned: SortTile): SortTile {
  return { block: Math.min(QUICK_SORT_TILE.block, tuned.block), wg: Math.min(QUICK_SORT_TILE.wg, tuned.wg) };
}

function sortSpec(label: string, entryPoint: string, tile: SortTile): KernelSpec {
  return { source: SORT_SOURCE, label: `${label}.${entryPoint}`, entryPoint, consts: { WG: tile.wg, BLOCK: tile.block } };
}

/** The kernels a sort of up to `padded` elements dispatches with `tile`. */
/** @internal shared with sortTopk.ts */
export function sortSpecs(label: string, padded: number, tile: SortTile): KernelSpec[] {
  const entries = padded > tile.block ? ['local_sort', 'global_step', 'local_merge', 'emit'] : ['local_sort', 'emit'];
  return entries.map((e) => sortSpec(label, e, tile));
}

/** Small buffers bound where an optional input or output is absent (the bind group needs one). */
/** @internal shared with sortTopk.ts */
export class Placeholders {
  readonly u32: GPUBuffer;
  readonly f32: GPUBuffer;
  readonly out: GPUBuffer;
  constructor(
    private readonly ctx: GpuContext,
    label: string,
  ) {
    this.u32 = ctx.createBuffer(`${label}.none-u32`, 16);
    this.f32 = ctx.createBuffer(`${label}.none-f32`, 16);
    this.out = ctx.createBuffer(`${label}.none-out`, 16);
  }
  destroy(): void {
    for (const b of [this.u32, this.f32, this.out]) this.ctx.release(b);
  }
}

/** @internal shared with sortTopk.ts */
export function checkSize(label: string, what: string, buffer: GPUBuffer | undefined, elements: number): void {
  if (buffer && buffer.size < elements * 4) {
    throw new Error(`${label}: ${what} holds ${buffer.size} bytes, needs ${elements * 4} (${elements} x 4-byte elements)`);
  }
}

/** WebGPU forbids binding one buffer as both read-only and writable storage in a dispatch. */
/** @internal shared with sortTopk.ts */
export function checkDistinct(label: string, buffers: SortBuffers): void {
  const outputs = [buffers.outKeys, buffers.outValues, buffers.outCount].filter((b) => b);
  const inputs = [buffers.keys, buffers.values, buffers.valid, buffers.count].filter((b) => b);
  if (outputs.some((b, i) => inputs.includes(b) || outputs.indexOf(b) !== i)) {
    throw new Error(`${label}: outKeys, outValues and outCount must be distinct buffers, and none of them an input (no in-place sort)`);
  }
}

/** @internal shared with sortTopk.ts */
export function checkOptions(label: string, maxN: number, options: SortOptions): { n: number; inOffset: number; outLimit: number; outOffset: number } {
  const n = options.n ?? maxN;
  if (!Number.isInteger(n) || n < 1 || n > maxN) throw new Error(`${label}: n = ${n} must be an integer in [1, ${maxN}] (the size given at construction)`);
  const outLimit = Math.min(n, options.outLimit ?? n);
  const outOffset = options.outOffset ?? 0;
  const inOffset = options.inOffset ?? 0;
  if (!Number.isInteger(inOffset) || inOffset < 0) throw new Error(`${label}: inOffset must be a non-negative integer, got ${inOffset}`);
  if (!Number.isInteger(outLimit) || outLimit < 1) throw new Error(`${label}: outLimit must be a positive integer, got ${options.outLimit}`);
  if (!Number.isInteger(outOffset) || outOffset < 0) throw new Error(`${label}: outOffset must be a non-negative integer, got ${outOffset}`);
  return { n, inOffset, outLimit, outOffset };
}

export class SortDescending {
  readonly padded: number;
  /** The tile: the tuned one, or under the context's kernel tiers its quick stand-in (engine/tiers.ts). */
  readonly tile: SortTile;
  private readonly scratch: GPUBuffer;
  private readonly none: Placeholders;

  /** `tile` overrides the context's choice (TopK's fallback passes its own). */
  constructor(
    private readonly ctx: GpuContext,
    readonly maxN: number,
    readonly label = 'sort',
    tile?: SortTile,
  ) {
    if (!Number.isInteger(maxN) || maxN < 1 || maxN > MAX_SORT_ELEMENTS) {
      throw new Error(`${label}: maxN = ${maxN} must be an integer in [1, ${MAX_SORT_ELEMENTS}]`);
    }
    this.padded = nextPow2(maxN);
    const tuned = tunedTile(ctx);
    this.tile = tile ?? ctx.tieredVariant(tuned, quickTile(tuned), (t) => sortSpecs(label, this.padded, t));
    this.scratch = ctx.createBuffer(`${label}.scratch`, this.padded * 8);
    this.none = new Placeholders(ctx, label);
  }

  private get wg(): number {
    return this.tile.wg;
  }

  private kernel(entryPoint: string): Kernel {
    return this.ctx.kernel(sortSpec(this.label, entryPoint, this.tile));
  }

  /** Records the sort of `io.keys` (see SortTensors) into `rec`. */
  record(rec: Recorder, io: SortTensors, options: SortOptions = {}): void {
    rec.record(...this.dispatches(sortBuffers(io), options));
  }

  /** @internal also used by TopK's fallback. */
  dispatches(buffers: SortBuffers, options: SortOptions = {}): Dispatch[] {
    const { ctx, label } = this;
    const { n, inOffset, outLimit, outOffset } = checkOptions(label, this.maxN, options);
    for (const [what, buffer, elements] of [
      ['keys', buffers.keys, inOffset + n],
      ['values', buffers.values, inOffset + n],
      ['valid', buffers.valid, inOffset + n],
      ['count', buffers.count, 1],
      ['outKeys', buffers.outKeys, outOffset + outLimit],
      ['outValues', buffers.outValues, outOffset + outLimit],
      ['outCount', buffers.outCount, 1],
    ] as const) {
      checkSize(label, what, buffer, elements);
    }
    checkDistinct(label, buffers);
    const padded = nextPow2(n);
    const block = Math.min(padded, this.tile.block);
    const base = {
      n,
      in_offset: inOffset,
      padded,
      block,
      k: 0,
      j: 0,
      row_pitch: 0,
      out_limit: outLimit,
      out_offset: outOffset,
      has_values: buffers.values ? 1 : 0,
      has_valid: buffers.valid ? 1 : 0,
      has_count: buffers.count ? 1 : 0,
      write_keys: buffers.outKeys ? 1 : 0,
    };
    const resources = {
      count_in: buffers.count ?? this.none.u32,
      keys: buffers.keys,
      values: buffers.values ?? this.none.u32,
      valid: buffers.valid ?? this.none.u32,
      scratch: this.scratch,
      out_keys: buffers.outKeys ?? this.none.f32,
      out_values: buffers.outValues,
      out_count: buffers.outCount ?? this.none.out,
    };
    const tiles = padded / block;
    const dispatches = [Dispatch.create(ctx, this.kernel('local_sort'), base, resources, [tiles])];
    const step = elementGrid(ctx, padded / 2, this.wg);
    for (let k = 2 * block; k <= padded; k *= 2) {
      for (let j = k / 2; j >= block; j /= 2) {
        dispatches.push(Dispatch.create(ctx, this.kernel('global_step'), { ...base, k, j, row_pitch: step.rowPitch }, resources, step.grid));
      }
      dispatches.push(Dispatch.create(ctx, this.kernel('local_merge'), { ...base, k }, resources, [tiles]));
    }
    const out = elementGrid(ctx, outLimit, this.wg);
    dispatches.push(Dispatch.create(ctx, this.kernel('emit'), { ...base, row_pitch: out.rowPitch }, resources, out.grid));
    return dispatches;
  }

  destroy(): void {
    this.ctx.release(this.scratch);
    this.none.destroy();
  }
}
