// MultiScaleRoIAlign (shaders/roi_align.wgsl): torchvision's ops/poolers.py over the FPN levels
// P2..P5 with the roi_align C++ CPU kernel semantics (aligned=False, sampling_ratio 2).
// Compile-time: output size P, sampling ratio, channels per invocation. Run-time uniforms: the
// level's size and spatial scale, channels, the planned maximum RoI count, and the level-choice
// area thresholds. The RoI count itself is read on the GPU, so one plan serves any count.
//
// Level choice. torch computes lvl = floor(4 + log2(sqrt(area) / 224) + 1e-6) in float32 with
// its own sqrt and log2; WGSL's sqrt/log2 are approximate, so the shader never evaluates that
// formula. The level is a monotone function of the float32 area, so here, on the CPU, a binary
// search over float32 bit patterns finds the smallest area that torch maps to each level
// (emulating its float32 steps with Math.fround; torch's float log2 is taken as Math.log2 rounded
// to float32, which is what a correctly rounded log2f returns), and the shader compares the box's
// float32 area, computed exactly as torch does, against those thresholds.

import exactF32 from '../../shaders/exact_f32.wgsl';
import body from '../../shaders/roi_align.wgsl';

const source = `${exactF32}\n${body}`;
import type { GpuContext } from '../gpu.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

const f = Math.fround;

export interface RoiAlignSpec {
  channels: number;
  /** Output size P (7 for the box head, 14 for the mask head). */
  outputSize: number;
  /** The largest RoI count a run may have; the output holds this many rows. */
  maxRois: number;
  /** torchvision's sampling_ratio (> 0; the adaptive mode is not supported). Default 2. */
  samplingRatio?: number;
  /** Channels one invocation pools (it shares the bin's sample weights across them). Default 16. */
  channelsPerInvocation?: number;
}

export interface RoiAlignInputs {
  /** P2..P5 (up to 4 levels), each [C, h, w] f32, batch 1. */
  features: Tensor[];
  /** [maxRois, 4] (x1, y1, x2, y2) f32 in resized-image coordinates. */
  boxes: Tensor;
  /** u32 at element 0: the number of valid RoIs. */
  count: Tensor;
  /** The unpadded resized image height the scales are inferred from (torchvision's image_sizes). */
  imageHeight: number;
}

/** Round half to even, as torch.round does. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * MultiScaleRoIAlign's inferred scale for a level: 2 ** round(log2(float32(featH / imageH))),
 * imageH being the largest unpadded resized image height of the batch.
 */
export function inferFeatureScale(featureHeight: number, imageHeight: number): number {
  return 2 ** roundHalfEven(f(Math.log2(f(featureHeight / imageHeight))));
}

/** torch's float32 LevelMapper level (before clamping) for a float32 area; NaN stays NaN. */
export function torchLevelOfArea(area: number): number {
  const s = f(Math.sqrt(f(area)));
  return Math.floor(f(f(4 + f(Math.log2(f(s / 224)))) + f(1e-6)));
}

const bitsToF32 = (() => {
  const u = new Uint32Array(1);
  const v = new Float32Array(u.buffer);
  return (bits: number) => {
    u[0] = bits;
    return v[0];
  };
})();

/** Smallest float32 area >= 0 with torchLevelOfArea(area) >= level, or Infinity when none. */
export function minAreaForLevel(level: number): number {
  const inf = 0x7f800000;
  if (!(torchLevelOfArea(bitsToF32(inf)) >= level)) return Infinity;
  let lo = 0; // bit patterns of non-negative floats are ordered like their values
  let hi = inf;
  while (lo < hi) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (torchLevelOfArea(bitsToF32(mid)) >= level) hi = mid;
    else lo = mid + 1;
  }
  return bitsToF32(lo);
}

/**
 * Area thresholds for level indices 1..3: a RoI of float32 area `a` pools from feature
 * index #{i : a >= thresholds[i-1]}, clamped to the last feature.
 */
export function levelAreaThresholds(kMin: number, levels: number): [number, number, number] {
  const t: number[] = [];
  for (let i = 1; i <= 3; i++) t.push(i < levels ? minAreaForLevel(kMin + i) : Infinity);
  return t as [number, number, number];
}

export class RoiAlignMultiLevel {
  readonly samplingRatio: number;
  readonly channelsPerInvocation: number;

  constructor(
    private readonly ctx: GpuContext,
    readonly spec: RoiAlignSpec,
    readonly label = 'roiAlign',
  ) {
    this.samplingRatio = spec.samplingRatio ?? 2;
    this.channelsPerInvocation = spec.channelsPerInvocation ?? 16;
    if (!Number.isInteger(this.samplingRatio) || this.samplingRatio < 1) {
      throw new Error(`${label}: sampling ratio ${this.samplingRatio} is not supported; use a positive integer (torchvision's default box/mask poolers use 2)`);
    }
    if (!(spec.outputSize >= 1 && spec.outputSize < 4096 && spec.channels >= 1 && spec.maxRois >= 1)) {
      throw new Error(`${label}: output size ${spec.outputSize}, channels ${spec.channels}, maxRois ${spec.maxRois} must be positive (output size < 4096)`);
    }
  }

  /** Bytes of the output: maxRois x C x P x P f32. */
  get outputBytes(): number {
    return this.spec.maxRois * this.spec.channels * this.spec.outputSize * this.spec.outputSize * 4;
  }

  /**
   * Records one dispatch per level (same pipeline): each pools the RoIs the level mapper assigns
   * to its level. Returns [maxRois, C, P, P]; rows at or past the count (and RoIs torch maps to no
   * level: NaN or negative area) are written with zeros, so the whole output is defined after
   * every run.
   */
  record(rec: Recorder, io: RoiAlignInputs): Tensor {
    const { spec, label } = this;
    const levels = io.features.map((t, i) => {
      if (t.shape.length !== 3 || t.shape[0] !== spec.channels) throw new Error(`${label}: feature level ${i} '${t.label}' must be [${spec.channels}, h, w], got [${t.shape.join(', ')}]`);
      return { h: t.shape[1], w: t.shape[2] };
    });
    if (levels.length < 1 || levels.length > 4) {
      throw new Error(`${label}: ${levels.length} feature levels given; MultiScaleRoIAlign here takes 1 to 4 levels (P2..P5)`);
    }
    const scales = levels.map((l) => inferFeatureScale(l.h, io.imageHeight));
    const kMin = Math.trunc(-Math.log2(scales[0]));
    const kMax = Math.trunc(-Math.log2(scales[scales.length - 1]));
    if (kMax - kMin !== levels.length - 1 || scales.some((s, i) => s !== scales[0] / 2 ** i)) {
      throw new Error(`${label}: inferred scales ${scales.join(', ')} are not consecutive powers of two; feature heights ${levels.map((l) => l.h).join(', ')} do not match image height ${io.imageHeight}`);
    }
    const maxBinding = this.ctx.device.limits.maxStorageBufferBindingSize;
    if (this.outputBytes > maxBinding) {
      throw new Error(`${label}: output of ${this.outputBytes} bytes (${spec.maxRois} RoIs x ${spec.channels} x ${spec.outputSize}^2) exceeds the ${maxBinding}-byte storage binding limit; lower maxRois`);
    }
    const [t1, t2, t3] = levelAreaThresholds(kMin, levels.length);
    const kernel = this.ctx.kernel({
      source,
      label,
      consts: { SAMPLING: this.samplingRatio, CHANNEL_BLOCK: this.channelsPerInvocation },
    });
    const channelBlocks = Math.ceil(spec.channels / this.channelsPerInvocation);
    const { grid, rowPitch } = elementGrid(this.ctx, spec.maxRois * channelBlocks * spec.outputSize * spec.outputSize, kernel.workgroup[0]);
    const output = rec.tensor(label, [spec.maxRois, spec.channels, spec.outputSize, spec.outputSize]);
    levels.forEach((level, i) => {
      if (!(level.h >= 1 && level.w >= 1)) throw new Error(`${label}: level ${i} is ${level.h}x${level.w}`);
      rec.record(Dispatch.create(
        this.ctx,
        kernel,
        {
          max_rois: spec.maxRois,
          channels: spec.channels,
          channel_blocks: channelBlocks,
          level: i,
          levels: levels.length,
          pooled: spec.outputSize,
          height: level.h,
          width: level.w,
          spatial_scale: scales[i],
          area_min_1: t1,
          area_min_2: t2,
          area_min_3: t3,
          zero: 0,
          row_pitch: rowPitch,
        },
        { feature: io.features[i].buffer, boxes: io.boxes.buffer, roi_count: io.count.buffer, output: output.buffer },
        grid,
      ));
    });
    return output;
  }
}
