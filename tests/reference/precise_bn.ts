// float64 reference for prune/bnStatistics.ts: torchvision "precise BN" over the ResNet body as
// tools/train.py precise_bn runs it (tools/finetune.py --iters 0), one image per batch: the body
// in training mode (every BatchNorm normalises with the image's own mean and biased variance),
// and each BatchNorm's running statistics the average over images of the image's mean and
// *unbiased* variance (momentum=None). Channels whose conv filter is all zero keep their stored
// statistics and output their FrozenBN constant; a channel constant over every image keeps its
// stored running_var (prune/bnStatistics.ts explains both rules). Inputs: raw (unfolded) state
// dict with canonical keys, and the preprocessed images [3, H, W].

import { bodyBnLayers, zeroFilters } from '../../prune/bnStatistics.ts';
import { BN_SUFFIXES, RESNET50_BLOCKS } from '../../weights-loader/maskrcnn.ts';
import type { Tensor } from '../../weights-loader/safetensors.ts';
import { batchNormTrainRef } from './batch_norm_apply.ts';
import { channelStatsRef } from './channel_stats.ts';
import { conv2dRef } from './conv2d.ts';
import { maxPool2dRef } from './pooling.ts';

interface Map3 {
  data: ArrayLike<number>;
  c: number;
  h: number;
  w: number;
}

export function preciseBnRef(tensors: Map<string, Tensor>, images: Map3[], eps: number): Map<string, { mean: Float64Array; variance: Float64Array }> {
  const layers = new Map(bodyBnLayers().map((l) => [l.conv, l]));
  const sums = new Map<string, { mean: Float64Array; variance: Float64Array }>();
  for (const img of images) {
    const layer = (conv: string, x: Map3, residual?: ArrayLike<number>): Map3 => {
      const l = layers.get(conv)!;
      const w = tensors.get(`${conv}.weight`)!;
      const [cout, cin, kh, kw] = w.shape;
      const z = conv2dRef({ batch: 1, cin, h: x.h, w: x.w, cout, kh, kw, stride: [l.stride, l.stride], padding: [l.padding, l.padding] }, x.data, w.data);
      const plane = z.oh * z.ow;
      const [gamma, beta, mean, variance] = BN_SUFFIXES.map((s) => tensors.get(`${l.bn}.${s}`)!.data);
      const zero = zeroFilters(w.data, cout);
      const g = Array.from(gamma, (v, o) => (zero[o] ? 0 : v));
      const b = Array.from(beta, (v, o) => (zero[o] ? v - mean[o] * (gamma[o] / Math.sqrt(variance[o] + eps)) : v));
      const stats = channelStatsRef(z.data, 1, cout, plane);
      const acc = sums.get(l.bn) ?? { mean: new Float64Array(cout), variance: new Float64Array(cout) };
      for (let c = 0; c < cout; c++) {
        acc.mean[c] += stats[2 * c];
        acc.variance[c] += stats[2 * c + 1] * (plane > 1 ? plane / (plane - 1) : 1);
      }
      sums.set(l.bn, acc);
      const y = batchNormTrainRef(z.data, { batch: 1, channels: cout, plane }, g, b, eps, { residual, relu: l.relu });
      return { data: y, c: cout, h: z.oh, w: z.ow };
    };
    const stem = layer('backbone.body.conv1', img);
    const pooled = maxPool2dRef({ planes: stem.c, h: stem.h, w: stem.w, kernel: 3, stride: 2, padding: 1 }, stem.data);
    let x: Map3 = { data: pooled.data, c: stem.c, h: pooled.oh, w: pooled.ow };
    RESNET50_BLOCKS.forEach((n, s) => {
      for (let b = 0; b < n; b++) {
        const p = `backbone.body.layer${s + 1}.${b}`;
        const t1 = layer(`${p}.conv1`, x);
        const t2 = layer(`${p}.conv2`, t1);
        const identity = b === 0 ? layer(`${p}.downsample.0`, x) : x;
        x = layer(`${p}.conv3`, t2, identity.data);
      }
    });
  }
  const out = new Map<string, { mean: Float64Array; variance: Float64Array }>();
  for (const l of bodyBnLayers()) {
    const acc = sums.get(l.bn)!;
    const zero = zeroFilters(tensors.get(`${l.conv}.weight`)!.data, acc.mean.length);
    const storedMean = tensors.get(`${l.bn}.running_mean`)!.data;
    const storedVar = tensors.get(`${l.bn}.running_var`)!.data;
    out.set(l.bn, {
      mean: Float64Array.from(acc.mean, (v, c) => (zero[c] ? storedMean[c] : v / images.length)),
      variance: Float64Array.from(acc.variance, (v, c) => (zero[c] || v === 0 ? storedVar[c] : v / images.length)),
    });
  }
  return out;
}
