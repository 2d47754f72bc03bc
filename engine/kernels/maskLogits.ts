// MaskLogits (shaders/mask_logits.wgsl): the mask predictor's mask_fcn_logits (a 1x1 conv to every
// class) and maskrcnn_inference's selection of the predicted class, fused: per detection only its
// label's logits are computed (bit-identical to the conv's), then the sigmoid. The weights stay in
// torch's [classes][C] layout; with precision 'f16' they are rounded to f16 as the conv would store
// them, so the result equals that conv's too.

import source from '../../shaders/mask_logits.wgsl';
import type { GpuContext } from '../gpu.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { floatToHalf, halfToFloat } from '../../weights-loader/float16.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

export class MaskLogits {
  private readonly weight: GPUBuffer;
  private readonly bias: GPUBuffer;

  /**
   * @param weight torch [classes][C][1][1]
   * @param bias [classes]
   */
  constructor(
    private readonly ctx: GpuContext,
    readonly channels: number,
    readonly classes: number,
    weight: Float32Array,
    bias: Float32Array | undefined,
    precision: 'f32' | 'f16' = 'f32',
    readonly label = 'mask_logits',
  ) {
    if (weight.length !== classes * channels) throw new Error(`${label}: weight has ${weight.length} values, expected ${classes}x${channels}x1x1 = ${classes * channels}`);
    if (bias && bias.length !== classes) throw new Error(`${label}: bias has ${bias.length} values, expected ${classes}`);
    const stored = precision === 'f16' ? Float32Array.from(weight, (v) => halfToFloat(floatToHalf(v))) : weight;
    this.weight = ctx.upload(`${label}.weight`, stored);
    this.bias = ctx.upload(`${label}.bias`, bias ?? new Float32Array(classes));
  }

  /** Records the probabilities of each detection's class from `features` [D, C, M, M]; returns [D, M, M]. */
  record(rec: Recorder, io: { features: Tensor; labels: Tensor; keptCount: Tensor }): Tensor {
    const { ctx, label } = this;
    if (io.features.shape.length !== 4 || io.features.shape[1] !== this.channels) {
      throw new Error(`${label}: features must be [D, ${this.channels}, M, M], got [${io.features.shape.join(', ')}]`);
    }
    const [maxDetections, , mh, mw] = io.features.shape;
    const pixels = mh * mw;
    const probs = rec.tensor(label, [maxDetections, mh, mw]);
    const kernel = ctx.kernel({ source, label });
    const { grid, rowPitch } = elementGrid(ctx, maxDetections * pixels, kernel.workgroup[0]);
    rec.record(
      Dispatch.create(
        ctx,
        kernel,
        { max_detections: maxDetections, channels: this.channels, classes: this.classes, pixels, row_pitch: rowPitch },
        { features: io.features.buffer, weight: this.weight, bias: this.bias, labels: io.labels.buffer, kept_count: io.keptCount.buffer, probs: probs.buffer },
        grid,
      ),
    );
    return probs;
  }

  destroy(): void {
    this.ctx.release(this.weight);
    this.ctx.release(this.bias);
  }
}
