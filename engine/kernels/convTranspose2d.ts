// ConvTranspose2d with kernel == stride (the mask head's 2x2, stride 2), optionally + ReLU.
// With kernel == stride each output pixel receives exactly one input pixel, so the op is a 1x1
// conv to Cout*S*S rows (o, ky, kx) followed by depth-to-space; it runs on shaders/conv2d.wgsl
// with SHUFFLE = S, which scatters the GEMM result in its epilogue.
// Semantics: torch.nn.ConvTranspose2d(Cin, Cout, kernel_size=S, stride=S, padding=0).

import source from '../../shaders/conv2d.wgsl';
import type { GpuContext } from '../gpu.ts';
import { conv2dConsts, epilogueFlags, packGemmWeight, type ConvShape } from './conv2d.ts';
import { nchw, sameRank, type Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { checkConvTile, convClass, type ConvTile } from './convTiling.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';
import { QUICK_CONV_TILE } from '../tiers.ts';

export interface ConvTranspose2dSpec {
  cin: number;
  cout: number;
  /** kernel size and stride (equal). */
  scale: number;
  relu?: boolean;
  tile?: ConvTile;
}

/** torch [Cin][Cout][S][S] -> GEMM rows [(Cout, S, S)][Cin]. */
export function reorderConvTransposeWeight(w: Float32Array, cin: number, cout: number, s: number): Float32Array {
  if (w.length !== cin * cout * s * s) throw new Error(`conv-transpose weight has ${w.length} values, expected ${cin}x${cout}x${s}x${s}`);
  const out = new Float32Array(w.length);
  for (let i = 0; i < cin; i++)
    for (let o = 0; o < cout; o++)
      for (let t = 0; t < s * s; t++) out[(o * s * s + t) * cin + i] = w[(i * cout + o) * s * s + t];
  return out;
}

export class ConvTranspose2d {
  private readonly weight: GPUBuffer;
  private readonly bias: GPUBuffer;

  constructor(
    private readonly ctx: GpuContext,
    readonly spec: ConvTranspose2dSpec,
    weight: Float32Array,
    bias?: Float32Array,
    readonly label = 'convTranspose2d',
  ) {
    if (bias && bias.length !== spec.cout) throw new Error(`${label}: bias has ${bias.length} values, expected ${spec.cout}`);
    if (spec.tile) checkConvTile(spec.tile, ctx.device.limits.maxComputeInvocationsPerWorkgroup);
    const rows = spec.cout * spec.scale * spec.scale;
    this.weight = ctx.upload(`${label}.weight`, packGemmWeight(reorderConvTransposeWeight(weight, spec.cin, spec.cout, spec.scale), rows, spec.cin));
    this.bias = ctx.upload(`${label}.bias`, bias ?? new Float32Array(spec.cout));
  }

  outputShape(input: ConvShape): ConvShape {
    return { batch: input.batch, h: input.h * this.spec.scale, w: input.w * this.spec.scale };
  }

  /**
   * Records the transposed conv of `x` ([Cin, H, W] or [N, Cin, H, W]) and returns its output
   * (same rank). With `batchLimit` (u32[1] on the GPU) only the first min(N, batchLimit[0])
   * entries are computed.
   */
  record(rec: Recorder, x: Tensor, opts: { batchLimit?: Tensor } = {}): Tensor {
    const { spec } = this;
    const { batch, c, h, w } = nchw(x);
    if (c !== spec.cin) throw new Error(`${this.label}: input '${x.label}' has ${c} channels, expected ${spec.cin}`);
    const y = rec.tensor(this.label, sameRank(x, batch, spec.cout, h * spec.scale, w * spec.scale));
    rec.record(this.dispatch({ batch, h, w }, x.buffer, y.buffer, opts.batchLimit?.buffer));
    return y;
  }

  private dispatch(input: ConvShape, x: GPUBuffer, y: GPUBuffer, batchLimit: GPUBuffer | undefined): Dispatch {
    const { spec } = this;
    const rows = spec.cout * spec.scale * spec.scale;
    const epilogue = { RELU: !!spec.relu, RESIDUAL: false, RESIDUAL_HALF: false, DYNAMIC_BATCH: !!batchLimit };
    const specFor = (tile: ConvTile) => ({ source, label: this.label, consts: conv2dConsts(tile, { KH: 1, KW: 1, PADDED: false, SHUFFLE: spec.scale, VEC_N: false }, epilogue) });
    const { kernel, variant: tile } = spec.tile
      ? { kernel: this.ctx.kernel(specFor(spec.tile)), variant: spec.tile }
      : this.ctx.tieredKernel(this.ctx.convTiling[convClass(spec.cin, 1, 1, input.batch * input.h * input.w)], QUICK_CONV_TILE, specFor);
    const n = input.batch * input.h * input.w;
    return Dispatch.create(
      this.ctx,
      kernel,
      { batch: input.batch, cin: spec.cin, h: input.h, w: input.w, cout: rows, oh: input.h, ow: input.w, stride_h: 1, stride_w: 1, pad_h: 0, pad_w: 0, dil_h: 1, dil_w: 1, flags: epilogueFlags(epilogue), kh: 1, kw: 1, shuffle: spec.scale },
      { input: x, weight: this.weight, bias: this.bias, residual: this.ctx.unusedBinding, output: y, batch_limit: batchLimit ?? this.ctx.unusedBinding },
      [ceilDiv(n, tile.tn * tile.wgX), ceilDiv(rows, tile.tm * tile.wgY)],
      this.label,
    );
  }

  destroy(): void {
    this.ctx.release(this.weight);
    this.ctx.release(this.bias);
  }
}
