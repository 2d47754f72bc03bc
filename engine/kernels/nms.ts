// GreedyNms (shaders/nms.wgsl): torchvision's nms / batched_nms on candidates already sorted by
// SortDescending, with the candidate count in a GPU buffer; output the kept candidate indices in
// descending-score order, cut at maxKeep (torchvision's `keep[:maxKeep]`), and their number.
//
// Exactness: every keep/suppress decision equals torch's CPU kernel (nms_kernel.cpp), for finite
// coordinates (no NaN) and intersections above 1e-38 (a device may flush f32 subnormals to 0).
// WGSL makes +, -, * correctly rounded, so w, h, inter, the areas and the denominator are torch's
// float32 values, provided no product is fused into the next add (the shader's opaque() prevents
// it). `ovr > iou_threshold` compares a float32 with a *double*, which equals "ovr > T" with
// T = the largest float32 <= threshold. WGSL's division is not correctly rounded (2.5 ulp), so
// the shader uses the quotient only when it is more than 2^-18 (relative) away from T, and
// otherwise decides "float32(inter / denom) > T" exactly with integers. No ulp-level difference.
//
// Groups (batched_nms): boxes of different groups never suppress each other (torchvision's
// `_batched_nms_vanilla`), unless the coordinate trick applies: torchvision 0.14 on the CPU uses
// `_batched_nms_coordinate_trick` (boxes + group * (boxes.max() + 1), all float32, then plain
// nms, which rounds IoU slightly differently) when at most 1000 boxes reach batched_nms, and the
// vanilla path above that. `coordinateTrickMaxCount` picks the rule; the choice is made on the
// GPU from the live count. Ties across groups come out in index order (torch's final merge uses
// a non-stable sort, so torch leaves that order open).
//
// Cost: one workgroup of 128 invocations, blocks of 128 sorted candidates; each candidate is
// tested against the boxes kept so far (<= maxKeep), then against the earlier survivors of its
// block; at most count * maxKeep + count * 64 IoU tests in total, count / 128 * 4 barriers, and
// it stops as soon as maxKeep are kept. Workgroup memory: 20 bytes per kept box + 5.6 KiB.

import source from '../../shaders/nms.wgsl';
import type { GpuContext, KernelSpec } from '../gpu.ts';
import { QUICK_NMS_WG } from '../tiers.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';

/** torchvision 0.14 on the CPU: coordinate trick when boxes.numel() <= 4000, i.e. <= 1000 boxes. */
export const TORCHVISION_CPU_COORDINATE_TRICK_MAX = 1000;

export interface NmsSpec {
  /** torch's iou_threshold (a double): suppress when IoU > it. 0.7 for the RPN, 0.5 for the box head. */
  iouThreshold: number;
  /** Keep at most this many (1000 RPN, 100 box head). */
  maxKeep: number;
  /**
   * Use the coordinate trick when the live count is <= this: 0 (default) never (pure per-group
   * NMS), TORCHVISION_CPU_COORDINATE_TRICK_MAX to reproduce torchvision 0.14 on the CPU (the
   * golden fixtures), Infinity always.
   */
  coordinateTrickMaxCount?: number;
  /**
   * Decide every IoU with the exact integer path, not only those near the threshold (slower;
   * lets a test check that path on all inputs, as a device with a coarser division relies on it).
   */
  integerPathOnly?: boolean;
}

export interface NmsTensors {
  /** f32 x1, y1, x2, y2 per candidate (indexed by the values in `order`). */
  boxes: Tensor;
  /** u32 group per candidate (RPN level, box-head class); default: one group. */
  groups?: Tensor;
  /** u32[n] candidate indices by descending score (SortDescending's outValues). */
  order: Tensor;
  /** u32: the number of live entries at the front of `order` (SortDescending's outCount); default n. */
  count?: Tensor;
  /** u32[maxKeep] out: kept candidate indices by descending score, then 0xffffffff. */
  keep: Tensor;
  /** u32[1] out: the number kept. */
  keepCount: Tensor;
}

/** The float32 threshold and midpoint constants that make the shader's test equal torch's. */
export function nmsThresholdParams(iouThreshold: number): { mid_mant: number; mid_exp: number; tie_up: number; fast_lo: number; fast_hi: number } {
  if (!(iouThreshold >= 0 && iouThreshold <= 1e6)) throw new Error(`nms: iouThreshold ${iouThreshold} must be a number in [0, 1e6]`);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  f32[0] = iouThreshold;
  if (f32[0] > iouThreshold) u32[0] -= 1; // largest float32 <= threshold (threshold > 0 here)
  const e = u32[0] >>> 23;
  const f = u32[0] & 0x7fffff;
  const mid_mant = e === 0 ? 2 * f + 1 : 2 ** 24 + 2 * f + 1;
  const mid_exp = e === 0 ? -150 : e - 151;
  const mid = mid_mant * 2 ** mid_exp;
  // The WGSL quotient is within a few ulp (2^-21 relative); 2^-18 margins leave no doubt.
  const below = (x: number): number => {
    f32[0] = x;
    if (f32[0] > x) u32[0] -= 1;
    return f32[0];
  };
  const above = (x: number): number => {
    f32[0] = x;
    if (f32[0] < x) u32[0] += 1;
    return f32[0];
  };
  return { mid_mant, mid_exp, tie_up: f & 1, fast_lo: below(mid * (1 - 2 ** -18)), fast_hi: above(mid * (1 + 2 ** -18)) };
}

/** Where the NMS keeps the boxes kept so far: workgroup memory (tuned) or storage (quick stand-in). */
type NmsVariant = 'workgroup' | 'storage';
/** Candidates per block: the tuned variant's workgroup, and the stand-in's (engine/tiers.ts). */
const NMS_WG = 128;

export class GreedyNms {
  constructor(
    private readonly ctx: GpuContext,
    readonly spec: NmsSpec,
    readonly label = 'nms',
  ) {
    if (!Number.isInteger(spec.maxKeep) || spec.maxKeep < 1) throw new Error(`${label}: maxKeep ${spec.maxKeep} must be a positive integer`);
    nmsThresholdParams(spec.iouThreshold);
  }

  /** The kernel for a variant (nms.wgsl: kept boxes in workgroup memory, or read through `keep`). */
  private kernelSpec(v: NmsVariant): KernelSpec {
    const inWorkgroup = v === 'workgroup';
    return {
      source,
      label: this.label,
      consts: { WG: inWorkgroup ? NMS_WG : QUICK_NMS_WG, KEPT_IN_WORKGROUP: inWorkgroup, KEPT_SLOTS: inWorkgroup ? this.spec.maxKeep : 1 },
    };
  }

  /**
   * Kept boxes in workgroup memory when they fit the device (maxKeep * 20 bytes beside the block's
   * 128 * 44), under the context's kernel tiers; read through `keep` otherwise (any maxKeep).
   */
  private variant(): NmsVariant {
    const fits = this.spec.maxKeep * 20 + NMS_WG * 44 + 16 <= this.ctx.device.limits.maxComputeWorkgroupStorageSize;
    if (!fits) return 'storage';
    return this.ctx.tieredVariant<NmsVariant>('workgroup', 'storage', (v) => [this.kernelSpec(v)]);
  }

  /** Records the NMS into `rec`; `n`: entries in `order` (the most candidates there can be). */
  record(rec: Recorder, io: NmsTensors, n: number): void {
    const { ctx, spec, label } = this;
    const buffers = { boxes: io.boxes.buffer, groups: io.groups?.buffer, order: io.order.buffer, count: io.count?.buffer, keep: io.keep.buffer, keepCount: io.keepCount.buffer };
    if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: n = ${n} must be a positive integer`);
    const need = (what: string, buffer: GPUBuffer | undefined, bytes: number): void => {
      if (buffer && buffer.size < bytes) throw new Error(`${label}: ${what} holds ${buffer.size} bytes, needs ${bytes}`);
    };
    need('order', buffers.order, n * 4);
    need('count', buffers.count, 4);
    need('keep', buffers.keep, spec.maxKeep * 4);
    need('keepCount', buffers.keepCount, 4);
    const inputs = [buffers.boxes, buffers.groups, buffers.order, buffers.count];
    if (buffers.keep === buffers.keepCount || inputs.includes(buffers.keep) || inputs.includes(buffers.keepCount)) {
      throw new Error(`${label}: keep and keepCount must be two buffers of their own, not inputs`);
    }
    const kernel = ctx.kernel(this.kernelSpec(this.variant()));
    const trickMax = spec.coordinateTrickMaxCount ?? 0;
    rec.record(Dispatch.create(
      ctx,
      kernel,
      {
        n,
        max_keep: spec.maxKeep,
        has_count: buffers.count ? 1 : 0,
        has_groups: buffers.groups ? 1 : 0,
        trick_max_count: Math.min(Math.max(0, trickMax), 0xffffffff),
        zero: 0,
        ...nmsThresholdParams(spec.iouThreshold),
        ...(spec.integerPathOnly ? { fast_lo: 0, fast_hi: 3.4028234663852886e38 } : {}),
      },
      {
        boxes: buffers.boxes,
        groups: buffers.groups ?? ctx.unusedBinding,
        order: buffers.order,
        count_in: buffers.count ?? ctx.unusedBinding,
        keep: buffers.keep,
        keep_count: buffers.keepCount,
      },
      [1],
    ));
  }
}
