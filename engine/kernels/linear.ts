// linear (+ReLU): y[r][o] = sum_i x[r][i] W[o][i] + b[o], torch.nn.Linear on a batch of rows
// (the box head's fc6/fc7 over RoIs). Runs on shaders/matmul.wgsl with B transposed, so the torch
// weight [out][in] is used as stored.

import type { GpuContext } from '../gpu.ts';
import type { Dispatch } from './dispatch.ts';
import { planMatmul, type MatmulTile } from './matmul.ts';

export class Linear {
  private readonly weight: GPUBuffer;
  private readonly bias: GPUBuffer;
  private readonly placeholder: GPUBuffer;

  constructor(
    private readonly ctx: GpuContext,
    readonly inFeatures: number,
    readonly outFeatures: number,
    weight: Float32Array,
    bias: Float32Array | undefined,
    readonly relu: boolean,
    readonly label = 'linear',
    readonly tile?: MatmulTile,
  ) {
    if (weight.length !== inFeatures * outFeatures) {
      throw new Error(`${label}: weight has ${weight.length} values, expected ${outFeatures}x${inFeatures}`);
    }
    if (bias && bias.length !== outFeatures) throw new Error(`${label}: bias has ${bias.length} values, expected ${outFeatures}`);
    this.weight = ctx.upload(`${label}.weight`, weight);
    this.bias = ctx.upload(`${label}.bias`, bias ?? new Float32Array(outFeatures));
    this.placeholder = ctx.createBuffer(`${label}.unused`, 16);
  }

  /** `input` holds rows x inFeatures, `output` rows x outFeatures. */
  plan(rows: number, buffers: { input: GPUBuffer; output: GPUBuffer }): Dispatch {
    return planMatmul(
      this.ctx,
      { transB: true, bias: true, relu: this.relu, tile: this.tile },
      { m: rows, n: this.outFeatures, k: this.inFeatures },
      { a: buffers.input, b: this.weight, c: buffers.output, bias: this.bias },
      this.placeholder,
      this.label,
    );
  }

  destroy(): void {
    this.ctx.release(this.weight);
    this.ctx.release(this.bias);
    this.ctx.release(this.placeholder);
  }
}
