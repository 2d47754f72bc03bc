// conv2d (shaders/conv2d.wgsl): implicit-GEMM convolution with bias, optional residual add and
// ReLU fused in the epilogue. Compile-time: kernel size, whether padding is possible, the epilogue
// and the register/workgroup tile. Run-time uniforms: batch, channels, sizes, stride, padding,
// dilation. Weights are reordered once, at load, from torch's [Cout][Cin][KH][KW] to
// [Cout][KH][KW][Cin].

import source from '../../shaders/conv2d.wgsl';
import type { GpuContext } from '../gpu.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';

export interface ConvTile {
  /** Output channels per invocation. */
  tm: number;
  /** Output pixels per invocation. */
  tn: number;
  wgX: number;
  wgY: number;
}

/** Best measured on Mesa lavapipe (see bench/README.md); override per adapter. */
export const DEFAULT_CONV_TILE: ConvTile = { tm: 8, tn: 8, wgX: 4, wgY: 4 };

export interface Conv2dSpec {
  cin: number;
  cout: number;
  kernel: [number, number];
  stride?: [number, number];
  padding?: [number, number];
  dilation?: [number, number];
  relu?: boolean;
  residual?: boolean;
  tile?: ConvTile;
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

/** [Cout][Cin][KH][KW] -> [Cout][KH][KW][Cin]. */
export function reorderConvWeight(w: Float32Array, cout: number, cin: number, kh: number, kw: number): Float32Array {
  if (w.length !== cout * cin * kh * kw) {
    throw new Error(`conv weight has ${w.length} values, expected ${cout}x${cin}x${kh}x${kw} = ${cout * cin * kh * kw}`);
  }
  const out = new Float32Array(w.length);
  for (let o = 0; o < cout; o++)
    for (let i = 0; i < cin; i++)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++) out[((o * kh + y) * kw + x) * cin + i] = w[((o * cin + i) * kh + y) * kw + x];
  return out;
}

export class Conv2d {
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  private readonly weight: GPUBuffer;
  private readonly bias: GPUBuffer;
  private readonly placeholder: GPUBuffer;

  /**
   * @param weight torch layout [Cout][Cin][KH][KW] (reordered here, once)
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
    if (bias && bias.length !== spec.cout) throw new Error(`${label}: bias has ${bias.length} values, expected ${spec.cout}`);
    this.weight = ctx.upload(`${label}.weight`, reorderConvWeight(weight, spec.cout, spec.cin, kh, kw));
    this.bias = ctx.upload(`${label}.bias`, bias ?? new Float32Array(spec.cout));
    this.placeholder = ctx.createBuffer(`${label}.no-residual`, 16);
  }

  outputShape(input: ConvShape): ConvShape {
    const [kh, kw] = this.spec.kernel;
    const oh = convOutputSize(input.h, kh, this.stride[0], this.padding[0], this.dilation[0]);
    const ow = convOutputSize(input.w, kw, this.stride[1], this.padding[1], this.dilation[1]);
    if (oh < 1 || ow < 1) throw new Error(`${this.label}: input ${input.h}x${input.w} is too small for this kernel/stride`);
    return { batch: input.batch, h: oh, w: ow };
  }

  /**
   * Binds buffers for one input size; `output` must hold batch x Cout x OH x OW floats. With
   * `batchLimit` (a u32 GPU buffer) only the first min(batch, batchLimit[0]) entries are computed.
   */
  plan(input: ConvShape, buffers: { input: GPUBuffer; output: GPUBuffer; residual?: GPUBuffer; batchLimit?: GPUBuffer }): Dispatch {
    const { spec } = this;
    if (!!spec.residual !== !!buffers.residual) {
      throw new Error(`${this.label}: residual buffer ${spec.residual ? 'missing' : 'given but the conv has no residual'}`);
    }
    const out = this.outputShape(input);
    const tile = spec.tile ?? DEFAULT_CONV_TILE;
    const [kh, kw] = spec.kernel;
    const kernel = this.ctx.kernel({
      source,
      label: this.label,
      consts: {
        TM: tile.tm,
        TN: tile.tn,
        WG_X: tile.wgX,
        WG_Y: tile.wgY,
        KH: kh,
        KW: kw,
        PADDED: this.padding[0] > 0 || this.padding[1] > 0,
        RELU: !!spec.relu,
        RESIDUAL: !!spec.residual,
        SHUFFLE: 1,
        DYNAMIC_BATCH: !!buffers.batchLimit,
      },
    });
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
      },
      {
        input: buffers.input,
        weight: this.weight,
        bias: this.bias,
        residual: buffers.residual ?? this.placeholder,
        output: buffers.output,
        batch_limit: buffers.batchLimit ?? this.placeholder,
      },
      [ceilDiv(n, tile.tn * tile.wgX), ceilDiv(spec.cout, tile.tm * tile.wgY)],
    );
  }

  /** MACs for one input of this shape. */
  macs(input: ConvShape): number {
    const o = this.outputShape(input);
    return o.batch * o.h * o.w * this.spec.cout * this.spec.cin * this.spec.kernel[0] * this.spec.kernel[1];
  }

  destroy(): void {
    this.ctx.release(this.weight);
    this.ctx.release(this.bias);
    this.ctx.release(this.placeholder);
  }
}
