// batchNormApply (shaders/batch_norm_apply.wgsl): BatchNorm2d in training mode with the
// statistics a channel_stats dispatch wrote on the GPU (same buffer, same channel offset), plus
// the bottleneck's residual add and ReLU in the same pass. Compile-time: ReLU, residual. Run-time:
// sizes, the stats offset, eps. gamma and beta are uploaded once, when the layer is built.

import source from '../../shaders/batch_norm_apply.wgsl';
import type { GpuContext } from '../gpu.ts';
import { nchw, sameRank, type Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

export class BatchNormApply {
  private readonly affine: GPUBuffer;

  /** `gamma`, `beta`: the BatchNorm's weight and bias, one value per channel. */
  constructor(
    private readonly ctx: GpuContext,
    readonly spec: { channels: number; eps: number; relu?: boolean; residual?: boolean },
    gamma: ArrayLike<number>,
    beta: ArrayLike<number>,
    readonly label = 'batch_norm_apply',
  ) {
    if (gamma.length !== spec.channels || beta.length !== spec.channels) {
      throw new Error(`${label}: gamma/beta have ${gamma.length}/${beta.length} values, expected ${spec.channels}`);
    }
    if (!(spec.eps >= 0)) throw new Error(`${label}: eps ${spec.eps} must be >= 0`);
    const affine = new Float32Array(2 * spec.channels);
    for (let c = 0; c < spec.channels; c++) [affine[2 * c], affine[2 * c + 1]] = [gamma[c], beta[c]];
    this.affine = ctx.upload(`${label}.affine`, affine);
  }

  /**
   * Records y = bn(x) [+ residual] [ReLU] with the mean and variance at channel `offset` of
   * `stats` (as recordChannelStats wrote them); returns y (pooled, same shape as x).
   */
  record(rec: Recorder, x: Tensor, stats: Tensor, opts: { offset?: number; residual?: Tensor } = {}): Tensor {
    const { spec } = this;
    const { batch, c, h, w } = nchw(x);
    if (c !== spec.channels) throw new Error(`${this.label}: input '${x.label}' has ${c} channels, expected ${spec.channels}`);
    if (!!spec.residual !== !!opts.residual) throw new Error(`${this.label}: residual ${spec.residual ? 'missing' : 'given but not in the spec'}`);
    const offset = opts.offset ?? 0;
    if (stats.buffer.size < (offset + c) * 8) throw new Error(`${this.label}: stats '${stats.label}' hold fewer than ${offset + c} channels`);
    const y = rec.tensor(this.label, sameRank(x, batch, c, h, w));
    const kernel = this.ctx.kernel({ source, label: this.label, consts: { RELU: !!spec.relu, RESIDUAL: !!spec.residual } });
    const count = batch * c * h * w;
    const { grid, rowPitch } = elementGrid(this.ctx, count, kernel.workgroup[0]);
    rec.record(
      Dispatch.create(
        this.ctx,
        kernel,
        { batch, channels: c, plane: h * w, offset, eps: spec.eps, row_pitch: rowPitch },
        { input: x.buffer, stats: stats.buffer, affine: this.affine, residual: opts.residual?.buffer ?? this.ctx.unusedBinding, output: y.buffer },
        grid,
      ),
    );
    return y;
  }

  destroy(): void {
    this.ctx.release(this.affine);
  }
}
