// ResNet-50 body (torchvision v1.5: stride on the 3x3) + FPN with the max-pool "pool" level.
// FrozenBatchNorm is already folded into the convs by the loader; the residual add and the
// block's final ReLU are fused into conv3's epilogue. Channel counts come from the weights.
// Semantics: torchvision resnet.Bottleneck, ops.FeaturePyramidNetwork, LastLevelMaxPool.

import type { GpuContext } from '../gpu.ts';
import type { Conv2d, ConvPrecision } from '../kernels/conv2d.ts';
import { recordMaxPool2d } from '../kernels/maxpool2d.ts';
import { recordUpsampleNearestAdd } from '../kernels/upsampleNearestAdd.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import type { MaskRCNNWeights } from '../../weights-loader/maskrcnn.ts';
import { convFromParams } from './layers.ts';

interface Block {
  conv1: Conv2d;
  conv2: Conv2d;
  conv3: Conv2d;
  downsample?: Conv2d;
}

export class ResNetFpn {
  private readonly stem: Conv2d;
  private readonly stages: Block[][];
  private readonly inner: Conv2d[];
  private readonly layer: Conv2d[];
  readonly fpnChannels: number;

  constructor(ctx: GpuContext, w: MaskRCNNWeights, precision: ConvPrecision = 'f32') {
    this.stem = convFromParams(ctx, w.stem, 'backbone.conv1', { relu: true, precision });
    this.stages = w.layers.map((blocks, li) =>
      blocks.map((b, bi) => {
        const name = `backbone.layer${li + 1}.${bi}`;
        return {
          conv1: convFromParams(ctx, b.conv1, `${name}.conv1`, { relu: true, precision }),
          conv2: convFromParams(ctx, b.conv2, `${name}.conv2`, { relu: true, precision }),
          conv3: convFromParams(ctx, b.conv3, `${name}.conv3`, { relu: true, residual: true, precision }),
          downsample: b.downsample ? convFromParams(ctx, b.downsample, `${name}.downsample`, { precision }) : undefined,
        };
      }),
    );
    this.inner = w.fpn.inner.map((p, i) => convFromParams(ctx, p, `fpn.inner${i}`, { precision }));
    this.layer = w.fpn.layer.map((p, i) => convFromParams(ctx, p, `fpn.layer${i}`, { precision }));
    this.fpnChannels = w.fpn.layer[0].cout;
  }

  /** Records the ResNet body for `image` [3, H, W] (kept by the caller); returns C2..C5. */
  recordBody(rec: Recorder, image: Tensor): Tensor[] {
    const stem = this.stem.record(rec, image);
    let x = recordMaxPool2d(rec, { kernel: 3, stride: 2, padding: 1 }, stem, 'backbone.maxpool');
    rec.release(stem);
    const stageOutputs: Tensor[] = [];
    for (const blocks of this.stages) {
      for (const b of blocks) {
        const identity = b.downsample ? b.downsample.record(rec, x) : x;
        const t1 = b.conv1.record(rec, x);
        const t2 = b.conv2.record(rec, t1);
        rec.release(t1);
        const y = b.conv3.record(rec, t2, { residual: identity });
        rec.release(t2);
        if (b.downsample) rec.release(identity);
        // The input of a stage's first block is the previous stage's output, kept for the FPN.
        if (!stageOutputs.includes(x)) rec.release(x);
        x = y;
      }
      stageOutputs.push(x);
    }
    return stageOutputs;
  }

  /**
   * Records the FPN over C2..C5 (released here); returns P2..P5 and the "pool" level P6.
   * Top-down: last_inner = inner[3](C5); P5 = layer[3](last_inner); then for 2, 1, 0:
   * last_inner = inner[i](C_i) + nearest(last_inner); P_i = layer[i](last_inner).
   */
  recordFpn(rec: Recorder, c: Tensor[]): Tensor[] {
    const levels: Tensor[] = new Array(4);
    let lastInner = this.inner[3].record(rec, c[3]);
    rec.release(c[3]);
    levels[3] = this.layer[3].record(rec, lastInner);
    for (let i = 2; i >= 0; i--) {
      const [, h, w] = c[i].shape;
      const size = this.inner[i].outputShape({ batch: 1, h, w });
      const [, th, tw] = lastInner.shape;
      let merged: Tensor;
      if (size.h === 2 * th && size.w === 2 * tw) {
        // Exactly x2 (inputs padded to a multiple of 32): the merge runs in the lateral conv's
        // epilogue, saving a pass over the level and a dispatch (bench/NOTES.md).
        merged = this.inner[i].record(rec, c[i], { residualHalf: lastInner });
        rec.release(c[i]);
      } else {
        const lateral = this.inner[i].record(rec, c[i]);
        rec.release(c[i]);
        merged = recordUpsampleNearestAdd(rec, lateral, lastInner, `fpn.merge${i}`);
        rec.release(lateral);
      }
      rec.release(lastInner);
      lastInner = merged;
      levels[i] = this.layer[i].record(rec, lastInner);
    }
    rec.release(lastInner);
    // LastLevelMaxPool: max_pool2d(P5, kernel 1, stride 2).
    levels.push(recordMaxPool2d(rec, { kernel: 1, stride: 2, padding: 0 }, levels[3], 'fpn.pool'));
    return levels;
  }

  destroy(): void {
    for (const c of [this.stem, ...this.stages.flatMap((bs) => bs.flatMap((b) => [b.conv1, b.conv2, b.conv3, b.downsample])), ...this.inner, ...this.layer]) c?.destroy();
  }
}
