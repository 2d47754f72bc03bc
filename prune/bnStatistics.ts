// Re-estimating the ResNet body's BatchNorm statistics on unlabeled images, on the GPU: the
// engine's analogue of torchvision "precise BN" as tools/finetune.py --iters 0 runs it
// (tools/train.py precise_bn): every BatchNorm2d of `backbone.body` (the 53 of a ResNet-50,
// downsample included) is reset, the body runs in training mode over the images, and with
// momentum=None each running statistic becomes the cumulative average over the batches of the
// batch statistic: running_mean = mean over images of the image's per-channel mean, running_var =
// mean over images of its *unbiased* per-channel variance (torch updates running_var with
// var * n / (n - 1)). The FPN and the heads have no BatchNorm: precise BN leaves them alone, and
// so does this. weight (gamma) and bias (beta) are kept.
//
// Training mode matters: each BatchNorm normalises with the statistics of the image going
// through it, not with the running ones being estimated, so a layer's statistics are measured on
// an input that its (re-normalised) predecessors already bring to the right scale. One batch is
// one image here (the engine runs one image at a time; train.py's precise BN uses 4, padded to a
// common size), resized and padded exactly as inference does.
//
// Why the weights are not the engine's: the loader folds FrozenBatchNorm into the conv
// (weights-loader/maskrcnn.ts), so the engine's conv outputs bn(conv(x)), never the pre-BN
// activation whose statistics are wanted. Here every conv of the body is built from the raw
// state dict: Conv2d with the unfolded weight and no bias gives z = conv(x); channel_stats
// writes z's mean and biased variance into one buffer (each layer at its own channel offset);
// batch_norm_apply normalises z with them on the GPU, adds the residual and applies the ReLU.
// One submit per image, one read-back of every layer's statistics.
//
// Channels whose conv filter is all zero (a compacted model's carrier channels, a masked model's
// pruned filters) are not re-estimated: their output is the constant their stored FrozenBN gives
// (relu of the folded bias, or the carrier's 1), so the calibrated mask and compact models stay
// the same network. A channel whose measured variance is 0 (constant over every image) keeps its
// stored running_var: with the re-estimated mean it outputs beta either way, and eps 0 (COCO
// weights) would otherwise make the loader's fold divide by zero.

import { BatchNormApply } from '../engine/kernels/batchNormApply.ts';
import { recordChannelStats } from '../engine/kernels/channelStats.ts';
import { Conv2d } from '../engine/kernels/conv2d.ts';
import { recordMaxPool2d } from '../engine/kernels/maxpool2d.ts';
import type { GpuContext } from '../engine/gpu.ts';
import type { Tensor as GpuTensor } from '../engine/planner.ts';
import type { Recorder } from '../engine/recorder.ts';
import { BN_SUFFIXES, RESNET50_BLOCKS } from '../weights-loader/maskrcnn.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';
import { nonFinite } from './calibrationOptions.ts';

/** One conv + BatchNorm of the body, run unfolded. */
interface BnLayer {
  conv: string;
  bn: string;
  channels: number;
  /** Channel offset of this layer's statistics in the shared buffer. */
  offset: number;
  /** Output channels whose conv filter is all zero: their stored statistics are kept. */
  frozen: Uint8Array;
  unfolded: Conv2d;
  norm: BatchNormApply;
}

/** The 53 (conv, bn) pairs of a torchvision ResNet-50 body, with stride and padding. */
export function bodyBnLayers(): Array<{ conv: string; bn: string; stride: number; padding: number; relu: boolean; residual: boolean }> {
  const out = [{ conv: 'backbone.body.conv1', bn: 'backbone.body.bn1', stride: 2, padding: 3, relu: true, residual: false }];
  RESNET50_BLOCKS.forEach((n, l) => {
    for (let b = 0; b < n; b++) {
      const p = `backbone.body.layer${l + 1}.${b}`;
      const stride = b === 0 && l > 0 ? 2 : 1;
      out.push({ conv: `${p}.conv1`, bn: `${p}.bn1`, stride: 1, padding: 0, relu: true, residual: false });
      out.push({ conv: `${p}.conv2`, bn: `${p}.bn2`, stride, padding: 1, relu: true, residual: false });
      out.push({ conv: `${p}.conv3`, bn: `${p}.bn3`, stride: 1, padding: 0, relu: true, residual: true });
      if (b === 0) out.push({ conv: `${p}.downsample.0`, bn: `${p}.downsample.1`, stride, padding: 0, relu: false, residual: false });
    }
  });
  return out;
}

/** Output channels of a [Cout][...] conv weight whose filter is all zero. */
export function zeroFilters(weight: Float32Array, cout: number): Uint8Array {
  const per = weight.length / cout;
  const zero = new Uint8Array(cout);
  for (let o = 0; o < cout; o++) {
    zero[o] = 1;
    for (let i = o * per; i < (o + 1) * per; i++) {
      if (weight[i] !== 0) {
        zero[o] = 0;
        break;
      }
    }
  }
  return zero;
}

/**
 * The ResNet body in training mode, built from a raw (canonical-key) state dict: records the body
 * for one preprocessed image and writes every BatchNorm's batch statistics into one buffer.
 */
export class TrainModeBody {
  readonly layers: BnLayer[] = [];
  /** Channels over all layers: the statistics buffer holds 2 floats per channel. */
  readonly totalChannels: number;

  constructor(
    ctx: GpuContext,
    tensors: Map<string, Tensor>,
    readonly eps: number,
  ) {
    let offset = 0;
    for (const l of bodyBnLayers()) {
      const w = tensors.get(`${l.conv}.weight`)!;
      const [cout, cin, kh, kw] = w.shape;
      const [gamma, beta, mean, variance] = BN_SUFFIXES.map((s) => tensors.get(`${l.bn}.${s}`)!.data);
      const frozen = zeroFilters(w.data, cout);
      // A zero filter's channel outputs its stored constant: gamma 0 and beta = the folded bias.
      const g = Float32Array.from(gamma, (v, o) => (frozen[o] ? 0 : v));
      const b = Float32Array.from(beta, (v, o) => (frozen[o] ? v - mean[o] * (gamma[o] / Math.sqrt(variance[o] + eps)) : v));
      const unfolded = new Conv2d(ctx, { cin, cout, kernel: [kh, kw], stride: [l.stride, l.stride], padding: [l.padding, l.padding] }, w.data, undefined, `${l.conv} (unfolded)`);
      const norm = new BatchNormApply(ctx, { channels: cout, eps, relu: l.relu, residual: l.residual }, g, b, `${l.bn} (train)`);
      this.layers.push({ conv: l.conv, bn: l.bn, channels: cout, offset, frozen, unfolded, norm });
      offset += cout;
    }
    this.totalChannels = offset;
  }

  /**
   * Records the body on `image` [3, H, W] (kept by the caller); statistics go to `stats`.
   * Returns each layer's output H * W (the values per channel its statistics are over).
   */
  record(rec: Recorder, image: GpuTensor, stats: GpuTensor): number[] {
    const planes = new Array<number>(this.layers.length);
    let i = 0;
    const layer = (x: GpuTensor, residual?: GpuTensor): GpuTensor => {
      const l = this.layers[i];
      const z = l.unfolded.record(rec, x);
      planes[i++] = z.shape[1] * z.shape[2];
      recordChannelStats(rec, z, { output: stats, offset: l.offset, label: `${l.bn} stats` });
      const y = l.norm.record(rec, z, stats, { offset: l.offset, residual });
      rec.release(z);
      return y;
    };
    const stem = layer(image);
    let x = recordMaxPool2d(rec, { kernel: 3, stride: 2, padding: 1 }, stem, 'backbone.maxpool');
    rec.release(stem);
    RESNET50_BLOCKS.forEach((n) => {
      for (let b = 0; b < n; b++) {
        const t1 = layer(x);
        const t2 = layer(t1);
        rec.release(t1);
        // conv3's batch norm takes the residual, which the downsample (recorded after it, in
        // bodyBnLayers order) must produce first: record the downsample out of order.
        const conv3 = this.layers[i];
        const conv3Index = i++;
        const identity = b === 0 ? layer(x) : x;
        const z = conv3.unfolded.record(rec, t2);
        planes[conv3Index] = z.shape[1] * z.shape[2];
        rec.release(t2);
        recordChannelStats(rec, z, { output: stats, offset: conv3.offset, label: `${conv3.bn} stats` });
        const y = conv3.norm.record(rec, z, stats, { offset: conv3.offset, residual: identity });
        rec.release(z);
        if (b === 0) rec.release(identity);
        rec.release(x);
        x = y;
      }
    });
    rec.release(x);
    return planes;
  }

  destroy(): void {
    for (const l of this.layers) {
      l.unfolded.destroy();
      l.norm.destroy();
    }
  }
}

/** Cumulative (momentum=None) averages of per-image BatchNorm statistics, in float64. */
export class BnAccumulator {
  private readonly means: Float64Array;
  private readonly vars: Float64Array;
  images = 0;

  constructor(private readonly body: TrainModeBody) {
    this.means = new Float64Array(body.totalChannels);
    this.vars = new Float64Array(body.totalChannels);
  }

  /**
   * Adds one image's statistics (mean, biased var per channel, as read back); `planes` gives each
   * layer's H * W for that image (the unbiased correction n / (n - 1); a 1x1 map keeps the biased value).
   */
  add(stats: Float32Array, planes: number[]): void {
    this.body.layers.forEach((l, li) => {
      const n = planes[li];
      const unbias = n > 1 ? n / (n - 1) : 1;
      for (let c = 0; c < l.channels; c++) {
        const k = l.offset + c;
        this.means[k] += stats[2 * k];
        this.vars[k] += stats[2 * k + 1] * unbias;
      }
    });
    this.images++;
  }

  /**
   * The re-estimated running statistics written into a copy of the BN tensors of `tensors`
   * (zero-filter channels and constant channels as described in the header). Returns the keys
   * written; throws if a statistic is not finite.
   */
  writeBack(tensors: Map<string, Tensor>): string[] {
    if (!this.images) throw new Error('no image was accumulated');
    const written: string[] = [];
    for (const l of this.body.layers) {
      const meanKey = `${l.bn}.running_mean`;
      const varKey = `${l.bn}.running_var`;
      const oldMean = tensors.get(meanKey)!;
      const oldVar = tensors.get(varKey)!;
      const mean = new Float32Array(oldMean.data);
      const variance = new Float32Array(oldVar.data);
      for (let c = 0; c < l.channels; c++) {
        if (l.frozen[c]) continue;
        const k = l.offset + c;
        const m = this.means[k] / this.images;
        const v = this.vars[k] / this.images;
        if (!Number.isFinite(m) || !Number.isFinite(v)) {
          throw nonFinite(`re-estimating '${l.bn}' gave a non-finite statistic at channel ${c} (mean ${m}, var ${v})`);
        }
        mean[c] = m;
        if (v > 0) variance[c] = v;
      }
      tensors.set(meanKey, { ...oldMean, data: mean });
      tensors.set(varKey, { ...oldVar, data: variance });
      written.push(meanKey, varKey);
    }
    return written;
  }
}
