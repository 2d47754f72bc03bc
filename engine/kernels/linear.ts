// linear (+ReLU): y[r][o] = sum_i x[r][i] W[o][i] + b[o], torch.nn.Linear on a batch of rows
// (the box head's fc6/fc7 over RoIs). Runs on shaders/matmul.wgsl with B transposed, so the torch
// weight [out][in] is used as stored.

import type { GpuContext } from '../gpu.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { recordMatmul, type MatmulTile } from './matmul.ts';

export class Linear {
  private readonly weight: GPUBuffer;
  private readonly bias: GPUBuffer;

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
  }

  /** Records y = x W^T + b (ReLU) for `x` [rows][...] holding rows x inFeatures values; returns y [rows][outFeatures]. */
  record(rec: Recorder, x: Tensor): Tensor {
    const rows = x.shape[0];
    const perRow = x.shape.slice(1).reduce((a, b) => a * b, 1);
    if (perRow !== this.inFeatures) throw new Error(`${this.label}: input '${x.label}' has ${perRow} features per row, expected ${this.inFeatures}`);
    const weight = { buffer: this.weight, shape: [this.outFeatures, this.inFeatures], label: `${this.label}.weight` };
    const bias = { buffer: this.bias, shape: [this.outFeatures], label: `${this.label}.bias` };
    return recordMatmul(rec, { transB: true, bias: true, relu: this.relu, tile: this.tile }, { m: rows, n: this.outFeatures, k: this.inFeatures }, { a: x, b: weight, bias }, this.label);
  }

  destroy(): void {
    this.ctx.release(this.weight);
    this.ctx.release(this.bias);
  }
}
