// TopK (shaders/sort_topk.wgsl, with shaders/sort_common.wgsl in front): torch.topk(scores, k),
// sorted, in SortDescending's order (sort.ts: same keys, ties, NaN and -0 rules, same optional
// inputs and outputs). Tile sorts keep each tile's best K (k rounded up to a power of two), then
// rounds of pairwise merges keep the best K of each pair: n log2(tile)^2 / 4 + (n / tile) K log2(K)
// work, 2 + ceil(log2(n / tile)) dispatches (9 for the RPN's k = 1000 of 201,600). A K larger than
// the tile (and the quick stand-in's 64-element tile, engine/tiers.ts) runs a full SortDescending.

import common from '../../shaders/sort_common.wgsl';
import topkBody from '../../shaders/sort_topk.wgsl';
import type { GpuContext, Kernel, KernelSpec } from '../gpu.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import {
  checkDistinct,
  checkOptions,
  checkSize,
  MAX_SORT_ELEMENTS,
  nextPow2,
  Placeholders,
  quickTile,
  SortDescending,
  sortBuffers,
  sortSpecs,
  tunedTile,
  type SortBuffers,
  type SortOptions,
  type SortTensors,
  type SortTile,
} from './sort.ts';

const TOPK_SOURCE = `${common}\n${topkBody}`;

export type TopKTensors = Omit<SortTensors, 'valid'>;

/**
 * The k best of up to maxN scores, sorted as SortDescending sorts them. k up to the tile size
 * (2048 on devices with 16 KiB of workgroup memory) runs the bitonic selection of
 * sort_topk.wgsl; a larger k falls back to a full SortDescending.
 */
export class TopK {
  readonly run: number;
  /** The tile: tuned, or the quick stand-in (a full sort when K exceeds it). */
  readonly tile: SortTile;
  private readonly ping?: GPUBuffer;
  private readonly pong?: GPUBuffer;
  private readonly fullSort?: SortDescending;
  private readonly none: Placeholders;

  constructor(
    private readonly ctx: GpuContext,
    readonly maxN: number,
    readonly k: number,
    readonly label = 'topk',
  ) {
    if (!Number.isInteger(maxN) || maxN < 1 || maxN > MAX_SORT_ELEMENTS) {
      throw new Error(`${label}: maxN = ${maxN} must be an integer in [1, ${MAX_SORT_ELEMENTS}]`);
    }
    if (!Number.isInteger(k) || k < 1) throw new Error(`${label}: k = ${k} must be a positive integer`);
    this.run = nextPow2(k);
    const tuned = tunedTile(ctx);
    this.tile = ctx.tieredVariant(tuned, quickTile(tuned), (t) => this.specs(t));
    this.none = new Placeholders(ctx, label);
    if (this.run > this.tile.block) {
      this.fullSort = new SortDescending(ctx, maxN, `${label}.sort`, this.tile);
    } else {
      const runs = Math.ceil(maxN / this.firstBlock(maxN));
      this.ping = ctx.createBuffer(`${label}.ping`, runs * this.run * 8);
      this.pong = ctx.createBuffer(`${label}.pong`, Math.ceil(runs / 2) * this.run * 8);
    }
  }

  /** Inputs per topk_first tile: a whole tile, but no more than n needs, and at least K. */
  private firstBlock(n: number, tile = this.tile): number {
    return Math.max(this.run, Math.min(tile.block, nextPow2(n)));
  }

  private get wg(): number {
    return this.tile.wg;
  }

  private topkSpec(entryPoint: string, tile: SortTile): KernelSpec {
    return { source: TOPK_SOURCE, label: `${this.label}.${entryPoint}`, entryPoint, consts: { WG: tile.wg, BLOCK: tile.block } };
  }

  /** The kernels the selection dispatches with `tile` (a full sort's when K exceeds the tile). */
  private specs(tile: SortTile): KernelSpec[] {
    if (this.run > tile.block) return sortSpecs(`${this.label}.sort`, nextPow2(this.maxN), tile);
    const merges = Math.ceil(this.maxN / this.firstBlock(this.maxN, tile)) > 1;
    return (merges ? ['topk_first', 'topk_merge', 'topk_emit'] : ['topk_first', 'topk_emit']).map((e) => this.topkSpec(e, tile));
  }

  private kernel(entryPoint: string): Kernel {
    return this.ctx.kernel(this.topkSpec(entryPoint, this.tile));
  }

  /** Records the selection into `rec`: min(k, n) outputs (options.outLimit is ignored: k is the limit). */
  record(rec: Recorder, io: TopKTensors, options: Omit<SortOptions, 'outLimit'> = {}): void {
    rec.record(...this.dispatches(sortBuffers(io), options));
  }

  private dispatches(buffers: Omit<SortBuffers, 'valid'>, options: Omit<SortOptions, 'outLimit'>): Dispatch[] {
    const { ctx, label } = this;
    const { n, inOffset, outOffset } = checkOptions(label, this.maxN, options);
    const k = Math.min(this.k, n);
    if (this.fullSort) return this.fullSort.dispatches(buffers, { n, inOffset, outLimit: k, outOffset });
    for (const [what, buffer, elements] of [
      ['keys', buffers.keys, inOffset + n],
      ['values', buffers.values, inOffset + n],
      ['count', buffers.count, 1],
      ['outKeys', buffers.outKeys, outOffset + k],
      ['outValues', buffers.outValues, outOffset + k],
      ['outCount', buffers.outCount, 1],
    ] as const) {
      checkSize(label, what, buffer, elements);
    }
    checkDistinct(label, buffers);
    const block = this.firstBlock(n);
    const base = {
      n,
      in_offset: inOffset,
      block,
      run: this.run,
      runs_in: 0,
      out_limit: k,
      out_offset: outOffset,
      has_values: buffers.values ? 1 : 0,
      has_count: buffers.count ? 1 : 0,
      write_keys: buffers.outKeys ? 1 : 0,
    };
    const fixed = {
      count_in: buffers.count ?? this.none.u32,
      keys: buffers.keys,
      values: buffers.values ?? this.none.u32,
      out_keys: buffers.outKeys ?? this.none.f32,
      out_values: buffers.outValues,
      out_count: buffers.outCount ?? this.none.out,
    };
    let runs = Math.ceil(n / block);
    let [src, dst] = [this.pong!, this.ping!];
    const dispatches = [Dispatch.create(ctx, this.kernel('topk_first'), base, { ...fixed, src, dst }, [runs])];
    while (runs > 1) {
      [src, dst] = [dst, src];
      const next = Math.ceil(runs / 2);
      dispatches.push(Dispatch.create(ctx, this.kernel('topk_merge'), { ...base, runs_in: runs }, { ...fixed, src, dst }, [next]));
      runs = next;
    }
    [src, dst] = [dst, src];
    dispatches.push(Dispatch.create(ctx, this.kernel('topk_emit'), base, { ...fixed, src, dst }, [Math.ceil(k / this.wg)]));
    return dispatches;
  }

  destroy(): void {
    this.ctx.release(this.ping);
    this.ctx.release(this.pong);
    this.fullSort?.destroy();
    this.none.destroy();
  }
}
