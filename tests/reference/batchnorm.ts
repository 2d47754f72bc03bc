// float64 reference for torchvision's FrozenBatchNorm2d (ops/misc.py) in eval:
// scale = weight * rsqrt(running_var + eps); shift = bias - running_mean * scale; y = x * scale + shift,
// per channel of an NCHW tensor. convThenBatchNormRef is the unfolded layer the loader's
// foldFrozenBatchNorm must reproduce: a bias-free conv2d, then the batch norm.

import { conv2dRef, type ConvRefArgs } from './conv2d.ts';

export interface BatchNormParams {
  weight: ArrayLike<number>;
  bias: ArrayLike<number>;
  running_mean: ArrayLike<number>;
  running_var: ArrayLike<number>;
}

export function frozenBatchNorm2dRef(x: ArrayLike<number>, batch: number, channels: number, plane: number, bn: BatchNormParams, eps: number): Float64Array {
  const out = new Float64Array(batch * channels * plane);
  for (let b = 0; b < batch; b++)
    for (let c = 0; c < channels; c++) {
      const scale = bn.weight[c] / Math.sqrt(bn.running_var[c] + eps);
      const shift = bn.bias[c] - bn.running_mean[c] * scale;
      const base = (b * channels + c) * plane;
      for (let i = 0; i < plane; i++) out[base + i] = x[base + i] * scale + shift;
    }
  return out;
}

export function convThenBatchNormRef(a: ConvRefArgs, input: ArrayLike<number>, weight: ArrayLike<number>, bn: BatchNormParams, eps: number): Float64Array {
  if (a.relu) throw new Error('convThenBatchNormRef: the ReLU comes after the batch norm; apply it separately');
  const y = conv2dRef(a, input, weight);
  return frozenBatchNorm2dRef(y.data, a.batch, a.cout, y.oh * y.ow, bn, eps);
}
