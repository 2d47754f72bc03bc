// ResNet-50 body (torchvision v1.5: stride on the 3x3) + FPN with the max-pool "pool" level.
// FrozenBatchNorm is already folded into the convs by the loader; the residual add and the
// block's final ReLU are fused into conv3's epilogue. Channel counts come from the weights.
// Semantics: torchvision resnet.Bottleneck, ops.FeaturePyramidNetwork, LastLevelMaxPool.

import type { GpuContext } from '../gpu.ts';
import { Conv2d, type ConvPrecision } from '../kernels/conv2d.ts';
import type { Dispatch } from '../kernels/dispatch.ts';
import { maxPoolOutputShape, planMaxPool2d } from '../kernels/maxpool2d.ts';
import { planUpsampleNearestAdd } from '../kernels/upsampleNearestAdd.ts';
import type { BufferPool, Tensor } from '../planner.ts';
import type { ConvParams, MaskRCNNWeights } from '../../weights-loader/maskrcnn.ts';
import type { StageMarker } from './stages.ts';

export function makeConv(ctx: GpuContext, p: ConvParams, label: string, opts: { relu?: boolean; residual?: boolean; precision?: ConvPrecision } = {}): Conv2d {
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

interface Block {
  conv1: Conv2d;
  conv2: Conv2d;
  conv3: Conv2d;
  downsample?: Conv2d;
}

/** A feature map [C, H, W] (batch 1). */
export interface FeatureMap extends Tensor {
  c: number;
  h: number;
  w: number;
}

export interface BackboneOutput {
  /** P2..P5 then the "pool" level P6 (strides 4, 8, 16, 32, and P5 subsampled by 2). */
  levels: FeatureMap[];
}

export class ResNetFpn {
  private readonly stem: Conv2d;
  private readonly stages: Block[][];
  private readonly inner: Conv2d[];
  private readonly layer: Conv2d[];
  readonly fpnChannels: number;

  constructor(
    private readonly ctx: GpuContext,
    w: MaskRCNNWeights,
    precision: ConvPrecision = 'f32',
  ) {
    this.stem = makeConv(ctx, w.stem, 'backbone.conv1', { relu: true, precision });
    this.stages = w.layers.map((blocks, li) =>
      blocks.map((b, bi) => {
        const name = `backbone.layer${li + 1}.${bi}`;
        return {
          conv1: makeConv(ctx, b.conv1, `${name}.conv1`, { relu: true, precision }),
          conv2: makeConv(ctx, b.conv2, `${name}.conv2`, { relu: true, precision }),
          conv3: makeConv(ctx, b.conv3, `${name}.conv3`, { relu: true, residual: true, precision }),
          downsample: b.downsample ? makeConv(ctx, b.downsample, `${name}.downsample`, { precision }) : undefined,
        };
      }),
    );
    this.inner = w.fpn.inner.map((p, i) => makeConv(ctx, p, `fpn.inner${i}`, { precision }));
    this.layer = w.fpn.layer.map((p, i) => makeConv(ctx, p, `fpn.layer${i}`, { precision }));
    this.fpnChannels = w.fpn.layer[0].cout;
  }

  private conv(pool: BufferPool, out: Dispatch[], conv: Conv2d, x: FeatureMap, residual?: FeatureMap, residualHalf?: FeatureMap): FeatureMap {
    const o = conv.outputShape({ batch: 1, h: x.h, w: x.w });
    const c = conv.spec.cout;
    const t = pool.tensor(conv.label, [c, o.h, o.w]);
    out.push(conv.plan({ batch: 1, h: x.h, w: x.w }, { input: x.buffer, output: t.buffer, residual: residual?.buffer, residualHalf: residualHalf?.buffer }));
    return { ...t, c, h: o.h, w: o.w };
  }

  /** Records the backbone + FPN for `image` [3, H, W]; `image` stays owned by the caller. */
  plan(pool: BufferPool, image: FeatureMap, out: Dispatch[], mark?: StageMarker): BackboneOutput {
    const ctx = this.ctx;
    let x = this.conv(pool, out, this.stem, image);
    const mp = maxPoolOutputShape({ kernel: 3, stride: 2, padding: 1 }, { batch: 1, h: x.h, w: x.w });
    const pooled = pool.tensor('backbone.maxpool', [x.c, mp.h, mp.w]);
    out.push(planMaxPool2d(ctx, { kernel: 3, stride: 2, padding: 1 }, { batch: 1, channels: x.c, h: x.h, w: x.w }, { input: x.buffer, output: pooled.buffer }));
    pool.release(x);
    x = { ...pooled, c: x.c, h: mp.h, w: mp.w };

    const stageOutputs: FeatureMap[] = [];
    for (const blocks of this.stages) {
      for (const b of blocks) {
        const identity = b.downsample ? this.conv(pool, out, b.downsample, x) : x;
        const t1 = this.conv(pool, out, b.conv1, x);
        const t2 = this.conv(pool, out, b.conv2, t1);
        pool.release(t1);
        const y = this.conv(pool, out, b.conv3, t2, identity);
        pool.release(t2);
        if (b.downsample) pool.release(identity);
        // The input of a stage's first block is the previous stage's output, kept for the FPN.
        if (!stageOutputs.includes(x)) pool.release(x);
        x = y;
      }
      stageOutputs.push(x);
    }

    // FPN top-down: last_inner = inner[3](C5); P5 = layer[3](last_inner); then for 2, 1, 0:
    // last_inner = inner[i](C_i) + nearest(last_inner); P_i = layer[i](last_inner).
    mark?.('fpn');
    const levels: FeatureMap[] = new Array(4);
    let lastInner = this.conv(pool, out, this.inner[3], stageOutputs[3]);
    pool.release(stageOutputs[3]);
    levels[3] = this.conv(pool, out, this.layer[3], lastInner);
    for (let i = 2; i >= 0; i--) {
      const size = this.inner[i].outputShape({ batch: 1, h: stageOutputs[i].h, w: stageOutputs[i].w });
      if (size.h === 2 * lastInner.h && size.w === 2 * lastInner.w) {
        // Exactly x2 (inputs padded to a multiple of 32): the merge runs in the lateral conv's
        // epilogue, saving a pass over the level and a dispatch (bench/NOTES.md).
        const merged = this.conv(pool, out, this.inner[i], stageOutputs[i], undefined, lastInner);
        pool.release(stageOutputs[i], lastInner);
        lastInner = merged;
        levels[i] = this.conv(pool, out, this.layer[i], lastInner);
        continue;
      }
      const lateral = this.conv(pool, out, this.inner[i], stageOutputs[i]);
      pool.release(stageOutputs[i]);
      const merged = pool.tensor(`fpn.merge${i}`, [lateral.c, lateral.h, lateral.w]);
      out.push(
        planUpsampleNearestAdd(
          ctx,
          { planes: lateral.c, h: lateral.h, w: lateral.w, topH: lastInner.h, topW: lastInner.w },
          { lateral: lateral.buffer, top: lastInner.buffer, output: merged.buffer },
        ),
      );
      pool.release(lateral, lastInner);
      lastInner = { ...merged, c: lateral.c, h: lateral.h, w: lateral.w };
      levels[i] = this.conv(pool, out, this.layer[i], lastInner);
    }
    pool.release(lastInner);

    // LastLevelMaxPool: max_pool2d(P5, kernel 1, stride 2).
    const p5 = levels[3];
    const p6shape = maxPoolOutputShape({ kernel: 1, stride: 2, padding: 0 }, { batch: 1, h: p5.h, w: p5.w });
    const p6 = pool.tensor('fpn.pool', [p5.c, p6shape.h, p6shape.w]);
    out.push(planMaxPool2d(ctx, { kernel: 1, stride: 2, padding: 0 }, { batch: 1, channels: p5.c, h: p5.h, w: p5.w }, { input: p5.buffer, output: p6.buffer }));
    levels.push({ ...p6, c: p5.c, h: p6shape.h, w: p6shape.w });
    return { levels };
  }

  /** MACs of the convs for a padded input size. */
  macs(h: number, w: number): number {
    let total = 0;
    const count = (conv: Conv2d, x: { h: number; w: number }) => {
      total += conv.macs({ batch: 1, h: x.h, w: x.w });
      return conv.outputShape({ batch: 1, h: x.h, w: x.w });
    };
    let s = count(this.stem, { h, w });
    s = maxPoolOutputShape({ kernel: 3, stride: 2, padding: 1 }, s);
    const sizes: Array<{ h: number; w: number }> = [];
    for (const blocks of this.stages) {
      for (const b of blocks) {
        count(b.conv1, s);
        const t = count(b.conv2, s);
        if (b.downsample) count(b.downsample, s);
        count(b.conv3, t);
        s = t;
      }
      sizes.push(s);
    }
    sizes.forEach((sz, i) => {
      count(this.inner[i], sz);
      count(this.layer[i], sz);
    });
    return total;
  }

  destroy(): void {
    for (const c of [this.stem, ...this.stages.flatMap((bs) => bs.flatMap((b) => [b.conv1, b.conv2, b.conv3, b.downsample])), ...this.inner, ...this.layer]) c?.destroy();
  }
}
