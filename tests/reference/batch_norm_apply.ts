// float64 reference for shaders/batch_norm_apply.wgsl: torch.nn.functional.batch_norm with
// training=True on an NCHW tensor (the batch's own mean and biased variance per channel), then an
// optional residual add and ReLU, as a ResNet bottleneck in train mode runs bn3 + identity + relu.
// A channel with gamma 0 or var + eps = 0 outputs beta (the shader's documented rule).

import { channelStatsRef } from './channel_stats.ts';

export function batchNormTrainRef(
  x: ArrayLike<number>,
  shape: { batch: number; channels: number; plane: number },
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  eps: number,
  opts: { residual?: ArrayLike<number>; relu?: boolean } = {},
): Float64Array {
  const { batch, channels, plane } = shape;
  const stats = channelStatsRef(x, batch, channels, plane);
  const out = new Float64Array(batch * channels * plane);
  for (let b = 0; b < batch; b++)
    for (let c = 0; c < channels; c++) {
      const denom = stats[2 * c + 1] + eps;
      const scale = gamma[c] !== 0 && denom > 0 ? gamma[c] / Math.sqrt(denom) : 0;
      for (let p = 0; p < plane; p++) {
        const i = (b * channels + c) * plane + p;
        let y = (x[i] - stats[2 * c]) * scale + beta[c];
        if (opts.residual) y += opts.residual[i];
        out[i] = opts.relu ? Math.max(y, 0) : y;
      }
    }
  return out;
}
