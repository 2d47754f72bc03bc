// Layers built from loaded weights: a torchvision conv (FrozenBatchNorm already folded by the
// loader) becomes a Conv2d with its stride, padding and fused epilogue.

import type { GpuContext } from '../gpu.ts';
import { Conv2d, type ConvPrecision } from '../kernels/conv2d.ts';
import type { ConvParams } from '../../weights-loader/maskrcnn.ts';

export function convFromParams(ctx: GpuContext, p: ConvParams, label: string, opts: { relu?: boolean; residual?: boolean; precision?: ConvPrecision } = {}): Conv2d {
  return new Conv2d(
    ctx,
    {
      cin: p.cin,
      cout: p.cout,
      kernel: [p.kh, p.kw],
      stride: [p.stride, p.stride],
      padding: [p.padding, p.padding],
      relu: opts.relu,
      residual: opts.residual,
      precision: opts.precision,
    },
    p.weight,
    p.bias,
    label,
  );
}
