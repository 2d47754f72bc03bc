// conv2d (shaders/conv2d.wgsl): implicit-GEMM convolution with bias, optional residual add and
// ReLU fused in the epilogue. Compile-time: kernel size, whether padding is possible, the epilogue,
// the register/workgroup tile (per adapter and conv class, engine/kernels/convTiling.ts), vec4
// input loads for aligned 1x1 convs, and the weights' storage precision. Run-time uniforms: batch,
// channels, sizes, stride, padding, dilation. Weights are packed once, at load, from torch's
// [Cout][Cin][KH][KW] to [KH][KW][Cin][Cout rounded up to 4] (f32, or f16 with shader-f16).

import source from '../../shaders/conv2d.wgsl';
import { GpuError, type GpuContext } from '../gpu.ts';
import { nchw, sameRank, type Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { floatToHalf } from '../../weights-loader/float16.ts';
import { checkConvTile, convClass, DIRECT_FALLBACK_TILE, type ConvTile } from './convTiling.ts';
import { matmulDispatch, matmulKernelSpec } from './matmul.ts';
import { winogradChunk, winogradEligible, winogradTiles, winogradTransformSpecs, winogradWeights, type WinogradSize } from './winograd.ts';
import type { KernelSpec } from '../gpu.ts';

/** Most bytes each of a Winograd layer's scratch tensors (V and M) takes; larger layers go in chunks of tiles. */
export const WINOGRAD_SCRATCH_BYTES = 32 * 2 ** 20;
import { QUICK_CONV_TILE } from '../tiers.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';

export type { ConvTile } from './convTiling.ts';

/**
 * Storage precision of the weights: 'f16' halves their memory and bandwidth (products and sums stay
 * f32); it needs the adapter feature 'shader-f16'.
 */
export type ConvPrecision = 'f32' | 'f16';

export interface Conv2dSpec {
  cin: number;
  cout: number;
  kernel: [number, number];
  stride?: [number, number];
  padding?: [number, number];
  dilation?: [number, number];
  relu?: boolean;
  residual?: boolean;
  /** Overrides the adapter's tile for this conv (tests, the tuner). */
  tile?: ConvTile;
  /** Most bytes of each Winograd scratch tensor (default WINOGRAD_SCRATCH_BYTES): larger layers run in chunks of tiles. */
  winogradScratchBytes?: number;
  precision?: ConvPrecision;
}

export interface ConvShape {
  batch: number;
  h: number;
  w: number;
}

/** torch's output size: floor((in + 2p - d(k-1) - 1) / s) + 1. */
export function convOutputSize(inSize: number, k: number, s: number, p: number, d: number): number {
  return Math.floor((inSize + 2 * p - d * (k - 1) - 1) / s) + 1;
}

/** GEMM weight rows [M][K] -> [K][M4] (M rounded up to a multiple of 4, zero filled): vec4 columns. */
export function packGemmWeight(rows: Float32Array, m: number, k: number): Float32Array {
  if (rows.length !== m * k) throw new Error(`GEMM weight has ${rows.length} values, expected ${m}x${k} = ${m * k}`);
  const m4 = Math.ceil(m / 4) * 4;
  const out = new Float32Array(k * m4);
  for (let r = 0; r < m; r++) for (let c = 0; c < k; c++) out[c * m4 + r] = rows[r * k + c];
  return out;
}

/** torch [Cout][Cin][KH][KW] -> [KH][KW][Cin][Cout4], the layout conv2d.wgsl reads. */
export function packConvWeight(w: Float32Array, cout: number, cin: number, kh: number, kw: number): Float32Array {
  if (w.length !== cout * cin * kh * kw) {
    throw new Error(`conv weight has ${w.length} values, expected ${cout}x${cin}x${kh}x${kw} = ${cout * cin * kh * kw}`);
  }
  // Rows [Cout][(ky, kx, ci)] first, then the shared transpose to [K][Cout4].
  const rows = new Float32Array(w.length);
  for (let o = 0; o < cout; o++)
    for (let i = 0; i < cin; i++)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++) rows[((o * kh + y) * kw + x) * cin + i] = w[((o * cin + i) * kh + y) * kw + x];
  return packGemmWeight(rows, cout, cin * kh * kw);
}

/** Uploads packed weights in the storage precision; f16 needs the device feature. */
export function uploadConvWeight(ctx: GpuContext, label: string, packed: Float32Array, precision: ConvPrecision): GPUBuffer {
  if (precision === 'f32') return ctx.upload(label, packed);
  if (precision !== 'f16') throw new Error(`${label}: precision '${precision}' is not 'f32' or 'f16'`);
  if (!ctx.device.features.has('shader-f16')) {
    throw new GpuError(
      `${label}: f16 weights need the WebGPU feature 'shader-f16', which this device lacks (${ctx.report.description || ctx.report.vendor || 'unknown adapter'}); use precision 'f32'`,
    );
  }
  return ctx.upload(label, Uint16Array.from(packed, floatToHalf));
}

/** The conv2d shader with the weights' storage type for `precision`. */
export function conv2dSource(precision: ConvPrecision): string {
  if (precision === 'f32') return source;
  const decl = 'alias WeightVec = vec4<f32>;';
  if (!source.includes(decl)) throw new Error(`conv2d.wgsl no longer declares '${decl}'`);
  return `enable f16;\n${source.replace(decl, 'alias WeightVec = vec4<f16>;')}`;
}

/** params.flags of conv2d.wgsl's DYNAMIC_EPILOGUE (the quick tier): bit 0 ReLU, 1 residual, 2 half-size residual, 3 GPU batch limit. */
export function epilogueFlags(e: { RELU: boolean; RESIDUAL: boolean; RESIDUAL_HALF: boolean; DYNAMIC_BATCH: boolean }): number {
  return (e.RELU ? 1 : 0) | (e.RESIDUAL ? 2 : 0) | (e.RESIDUAL_HALF ? 4 : 0) | (e.DYNAMIC_BATCH ? 8 : 0);
}

/**
 * conv2d.wgsl's constants for a tile. The quick stand-in (QUICK_CONV_TILE, engine/tiers.ts) reads
 * its epilogue from params.flags and its kernel size and pixel shuffle from params (DYNAMIC_TAPS),
 * and takes no vec4 pixel loads: one variant for every conv of a plan.
 */
export function conv2dConsts(
  tile: ConvTile,
  shape: { KH: number; KW: number; PADDED: boolean; SHUFFLE: number; VEC_N: boolean },
  epilogue: { RELU: boolean; RESIDUAL: boolean; RESIDUAL_HALF: boolean; DYNAMIC_BATCH: boolean },
): Record<string, number | boolean> {
  const quick = tile === QUICK_CONV_TILE;
  return {
    TM: tile.tm,
    TN: tile.tn,
    WG_X: tile.wgX,
    WG_Y: tile.wgY,
    ...(quick ? { KH: 1, KW: 1, PADDED: true, SHUFFLE: 1, VEC_N: false } : shape),
    ...(quick ? { RELU: false, RESIDUAL: false, RESIDUAL_HALF: false, DYNAMIC_BATCH: false } : epilogue),
    DYNAMIC_EPILOGUE: quick,
    DYNAMIC_TAPS: quick,
  };
}

type WinogradEpilogueFlags = { RELU: boolean; RESIDUAL: boolean; RESIDUAL_HALF: boolean; DYNAMIC_BATCH: boolean };
/** A conv's buffers for one recording. */
interface ConvIo {
  x: GPUBuffer;
  y: GPUBuffer;
  residual?: GPUBuffer;
  residualHalf: boolean;
  batchLimit?: GPUBuffer;
}

export class Conv2d {
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly precision: ConvPrecision;
  private readonly weight: GPUBuffer;
  private readonly bias: GPUBuffer;
  /** torch-layout weights as given (the caller's array, not modified), for a Winograd transform at first use. */
  private readonly source?: Float32Array;
  /** Winograd-transformed weights (winograd.ts), made at the first plan that runs the layer so. */
  private readonly winogradWeight = new Map<WinogradSize, GPUBuffer>();

  /**
   * @param weight torch layout [Cout][Cin][KH][KW] (packed here, once)
   * @param bias [Cout], or undefined for zeros
   */
  constructor(
    private readonly ctx: GpuContext,
    readonly spec: Conv2dSpec,
    weight: Float32Array,
    bias?: Float32Array,
    readonly label = 'conv2d',
  ) {
    const [kh, kw] = spec.kernel;
    this.stride = spec.stride ?? [1, 1];
    this.padding = spec.padding ?? [0, 0];
    this.dilation = spec.dilation ?? [1, 1];
    this.precision = spec.precision ?? 'f32';
    if (spec.tile) checkConvTile(spec.tile, ctx.device.limits.maxComputeInvocationsPerWorkgroup);
    if (bias && bias.length !== spec.cout) throw new Error(`${label}: bias has ${bias.length} values, expected ${spec.cout}`);
    this.weight = uploadConvWeight(ctx, `${label}.weight`, packConvWeight(weight, spec.cout, spec.cin, kh, kw), this.precision);
    this.bias = ctx.upload(`${label}.bias`, bias ?? new Float32Array(spec.cout));
    // Kept by reference (not copied): the Winograd transform reads it only if a plan asks for it.
    if (this.winogradEligible) this.source = weight;
    if (spec.tile?.winograd && !this.winogradEligible) {
      throw new Error(`${label}: tile ${JSON.stringify(spec.tile)} asks for Winograd, which needs a 3x3 kernel, stride 1, dilation 1 and f32 weights`);
    }
  }

  /** 3x3, stride 1, dilation 1, f32 weights: the layer can run as Winograd (winograd.ts). */
  get winogradEligible(): boolean {
    return winogradEligible({ kernel: this.spec.kernel, stride: this.stride, dilation: this.dilation, precision: this.precision });
  }

  outputShape(input: ConvShape): ConvShape {
    const [kh, kw] = this.spec.kernel;
    const oh = convOutputSize(input.h, kh, this.stride[0], this.padding[0], this.dilation[0]);
    const ow = convOutputSize(input.w, kw, this.stride[1], this.padding[1], this.dilation[1]);
    if (oh < 1 || ow < 1) throw new Error(`${this.label}: input ${input.h}x${input.w} is too small for this kernel/stride`);
    return { batch: input.batch, h: oh, w: ow };
  }

  /**
   * The tile this conv runs with for `input`: its own, else the adapter's for its class (a
   * Winograd tile only where the layer qualifies: f16 weights take the direct fallback).
   */
  tileFor(input: ConvShape): ConvTile {
    if (this.spec.tile) return this.spec.tile;
    const out = this.outputShape(input);
    const [kh, kw] = this.spec.kernel;
    const tile = this.ctx.convTiling[convClass(this.spec.cin, kh, kw, out.batch * out.h * out.w, this.stride, this.dilation)];
    return tile.winograd && !this.winogradEligible ? DIRECT_FALLBACK_TILE : tile;
  }

  /**
   * Records the conv of `x` ([Cin, H, W] or [N, Cin, H, W]) and returns its output (same rank,
   * from the plan's pool unless `output` is given). `residual` (output-shaped) is added before the
   * ReLU; `residualHalf` ([..., Cout, OH/2, OW/2]) is added nearest-upsampled x2 after the bias:
   * the FPN merge lateral + interpolate(top) in one pass, bit-identical to the two kernels. With
   * `batchLimit` (u32[1] on the GPU) only the first min(N, batchLimit[0]) entries are computed.
   */
  record(rec: Recorder, x: Tensor, opts: { residual?: Tensor; residualHalf?: Tensor; batchLimit?: Tensor; output?: Tensor } = {}): Tensor {
    const { spec } = this;
    const { batch, c, h, w } = nchw(x);
    if (c !== spec.cin) throw new Error(`${this.label}: input '${x.label}' has ${c} channels, the conv expects ${spec.cin}`);
    if (!!spec.residual !== !!opts.residual) {
      throw new Error(`${this.label}: residual ${spec.residual ? 'missing' : 'given but the conv has no residual'}`);
    }
    if (x.buffer.size % 16) {
      throw new Error(`${this.label}: the input buffer's size (${x.buffer.size} bytes) must be a multiple of 16 (it is read as vec4s); allocate it with GpuContext.createBuffer`);
    }
    const input = { batch, h, w };
    const out = this.outputShape(input);
    if (opts.residualHalf && (spec.residual || out.h % 2 || out.w % 2)) {
      throw new Error(`${this.label}: a half-size residual needs a conv without its own residual and an even output size (got ${out.h}x${out.w})`);
    }
    const y = opts.output ?? rec.tensor(this.label, sameRank(x, batch, spec.cout, out.h, out.w));
    if (y.buffer.size < batch * spec.cout * out.h * out.w * 4) throw new Error(`${this.label}: output '${y.label}' is too small`);
    const io = { x: x.buffer, y: y.buffer, residual: opts.residual?.buffer ?? opts.residualHalf?.buffer, residualHalf: !!opts.residualHalf, batchLimit: opts.batchLimit?.buffer };
    const epilogue = { RELU: !!spec.relu, RESIDUAL: !!spec.residual, RESIDUAL_HALF: io.residualHalf, DYNAMIC_BATCH: !!io.batchLimit };
    // A tile given in the spec is used as is; the adapter's tile may wait behind a quick stand-in (engine/tiers.ts).
    const specsFor = (tile: ConvTile) => this.kernelSpecs(tile, input, out, epilogue);
    const tile = spec.tile ?? this.ctx.tieredVariant(this.tileFor(input), QUICK_CONV_TILE, specsFor);
    if (tile.winograd) this.recordWinograd(rec, tile, tile.winograd, input, out, io, epilogue);
    else rec.record(this.directDispatch(tile, specsFor(tile)[0], input, out, io, epilogue));
    return y;
  }

  /** What a tile dispatches: the direct conv, or Winograd's input transform, batched GEMM and output transform. */
  private kernelSpecs(tile: ConvTile, input: ConvShape, out: ConvShape, epilogue: WinogradEpilogueFlags): KernelSpec[] {
    if (tile.winograd) {
      const t = winogradTransformSpecs(tile.winograd, epilogue, this.label);
      // The GEMM's columns are a chunk's tiles rounded up to 4 (recordWinograd): vec4 loads of B.
      return [t.input, matmulKernelSpec({}, { n: 4 }, tile, `${this.label}.winograd-gemm`, epilogue.DYNAMIC_BATCH), t.output];
    }
    const [kh, kw] = this.spec.kernel;
    const pointwise = kh === 1 && kw === 1 && this.stride.every((s) => s === 1) && this.padding.every((p) => p === 0);
    const padded = this.padding[0] > 0 || this.padding[1] > 0;
    return [
      {
        source: conv2dSource(this.precision),
        label: this.label,
        consts: conv2dConsts(tile, { KH: kh, KW: kw, PADDED: padded, SHUFFLE: 1, VEC_N: pointwise && (out.h * out.w) % 4 === 0 && tile.tn % 4 === 0 }, epilogue),
      },
    ];
  }

  /**
   * Winograd F(m, 3) (winograd.ts): per chunk of output tiles, the input transform writes V
   * [A*A][Cin][chunk], matmul.wgsl runs the A*A products U[e] V[e] in one batched dispatch into M
   * [A*A][Cout][chunk], and the output transform writes the outputs with the epilogue. V and M come
   * from the plan's pool and go back to it at once.
   */
  private recordWinograd(rec: Recorder, tile: ConvTile, m: WinogradSize, input: ConvShape, out: ConvShape, io: ConvIo, epilogue: WinogradEpilogueFlags): void {
    const { spec, ctx } = this;
    const aa = (m + 2) ** 2;
    const { tilesY, tilesX } = winogradTiles(out.h, out.w, m);
    const tiles = input.batch * tilesY * tilesX;
    const chunk = winogradChunk(m, spec.cin, spec.cout, tiles, Math.min(spec.winogradScratchBytes ?? WINOGRAD_SCRATCH_BYTES, ctx.device.limits.maxStorageBufferBindingSize));
    const v = rec.tensor(`${this.label}.V`, [aa * spec.cin * chunk]);
    const mm = rec.tensor(`${this.label}.M`, [aa * spec.cout * chunk]);
    const t = winogradTransformSpecs(m, epilogue, this.label);
    const inKernel = ctx.kernel(t.input);
    const outKernel = ctx.kernel(t.output);
    const u = this.winogradBuffer(m);
    for (let p0 = 0; p0 < tiles; p0 += chunk) {
      const pc = Math.min(chunk, tiles - p0);
      const pc4 = Math.ceil(pc / 4) * 4;
      const common = { batch: input.batch, tiles_y: tilesY, tiles_x: tilesX, p0, pc, pc4 };
      rec.record(
        Dispatch.create(ctx, inKernel, { ...common, channels: spec.cin, h: input.h, w: input.w, pad_h: this.padding[0], pad_w: this.padding[1] }, { input: io.x, v: v.buffer, batch_limit: io.batchLimit ?? ctx.unusedBinding }, [ceilDiv(pc, 64), ceilDiv(spec.cin, 4)], `${this.label}.winograd-in`),
        matmulDispatch(
          ctx,
          { tile },
          { m: spec.cout, n: pc4, k: spec.cin },
          { a: u, b: v.buffer, c: mm.buffer },
          `${this.label}.winograd-gemm`,
          { count: aa, a: spec.cout * spec.cin, b: spec.cin * pc4, c: spec.cout * pc4 },
          // Under a GPU batch limit only the live entries' tiles are multiplied.
          io.batchLimit ? { limit: io.batchLimit, perLimit: tilesY * tilesX, offset: p0 } : undefined,
        ),
        Dispatch.create(
          ctx,
          outKernel,
          { ...common, channels: spec.cout, h: out.h, w: out.w, pad_h: 0, pad_w: 0 },
          { mm: mm.buffer, bias: this.bias, residual: io.residual ?? ctx.unusedBinding, output: io.y, batch_limit: io.batchLimit ?? ctx.unusedBinding },
          [ceilDiv(pc, 64), ceilDiv(spec.cout, 4)],
          `${this.label}.winograd-out`,
        ),
      );
    }
    rec.release(v, mm);
  }

  private directDispatch(tile: ConvTile, kernelSpec: KernelSpec, input: ConvShape, out: ConvShape, io: ConvIo, epilogue: WinogradEpilogueFlags): Dispatch {
    const { spec } = this;
    const [kh, kw] = spec.kernel;
    const { x, y, residual, batchLimit } = io;
    const kernel = this.ctx.kernel(kernelSpec);
    const n = input.batch * out.h * out.w;
    return Dispatch.create(
      this.ctx,
      kernel,
      {
        batch: input.batch,
        cin: spec.cin,
        h: input.h,
        w: input.w,
        cout: spec.cout,
        oh: out.h,
        ow: out.w,
        stride_h: this.stride[0],
        stride_w: this.stride[1],
        pad_h: this.padding[0],
        pad_w: this.padding[1],
        dil_h: this.dilation[0],
        dil_w: this.dilation[1],
        flags: epilogueFlags(epilogue),
        kh,
        kw,
        shuffle: 1,
      },
      {
        input: x,
        weight: this.weight,
        bias: this.bias,
        residual: residual ?? this.ctx.unusedBinding,
        output: y,
        batch_limit: batchLimit ?? this.ctx.unusedBinding,
      },
      [ceilDiv(n, tile.tn * tile.wgX), ceilDiv(spec.cout, tile.tm * tile.wgY)],
      this.label,
    );
  }

  /** The Winograd weights for F(m, 3), transformed and uploaded at first use. */
  private winogradBuffer(m: WinogradSize): GPUBuffer {
    let buffer = this.winogradWeight.get(m);
    if (!buffer) {
      if (!this.source) throw new Error(`${this.label}: Winograd needs a 3x3 stride-1 f32 conv`);
      buffer = this.ctx.upload(`${this.label}.weight F(${m},3)`, winogradWeights(this.source, this.spec.cout, this.spec.cin, m));
      this.winogradWeight.set(m, buffer);
    }
    return buffer;
  }

  destroy(): void {
    this.ctx.release(this.weight);
    this.ctx.release(this.bias);
    for (const b of this.winogradWeight.values()) this.ctx.release(b);
    this.winogradWeight.clear();
  }
}
