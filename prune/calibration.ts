// Calibration of a pruned Mask R-CNN on unlabeled images, on the GPU with the engine's kernels:
// prune() runs it on the compacted (or masked) state dict when `calibration` is given. The result
// stays a torchvision state dict with the same keys and shapes; only values change:
// - 'stats' (bnStatistics.ts): the ResNet body's BatchNorm running statistics re-estimated in
//   training mode (torchvision precise BN, as tools/finetune.py --iters 0);
// - 'lsq' (leastSquares.ts): the consumers of pruned channels refitted by least squares to the
//   unpruned network's outputs (He et al. 2017);
// - 'stats+lsq': both.
// Every image is preprocessed as inference does (the weights' min/max size, pad to 32). Any
// failure raises a CalibrationError naming the image or layer; nothing is returned then.

import type { GpuContext } from '../engine/gpu.ts';
import { normalizationTable, recordPreprocess, resizePlan, type ResizePlan } from '../engine/kernels/preprocess.ts';
import type { Tensor as GpuTensor } from '../engine/planner.ts';
import { Recorder } from '../engine/recorder.ts';
import { loadMaskRCNNWeights, WeightsError, type MaskRCNNMeta } from '../weights-loader/maskrcnn.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';
import { BnAccumulator, TrainModeBody } from './bnStatistics.ts';
import { reconstructBody, type LeastSquaresReport } from './leastSquares.ts';
import { reconstructHeads } from './leastSquaresHeads.ts';
import { CalibrationError, imageName, nonFinite, type CalibrationImage, type CalibrationMode, type ResolvedCalibration } from './calibrationOptions.ts';

export interface CalibrationReport {
  mode: CalibrationMode;
  images: number;
  seconds: number;
  /** Peak bytes of GPU buffers the engine held while calibrating (weights, activations, statistics). */
  peakGpuBytes: number;
  stats?: { layers: number; images: number; seconds: number };
  leastSquares?: LeastSquaresReport;
}

/** The resize of one calibration image, with the limits the model itself would refuse it for. */
export function calibrationResize(ctx: GpuContext, image: CalibrationImage, index: number, meta: MaskRCNNMeta, widestChannels: number): ResizePlan {
  let resize: ResizePlan;
  try {
    resize = resizePlan(image.height, image.width, meta.minSize, meta.maxSize);
  } catch (e) {
    throw new CalibrationError(`${imageName(image, index)}: ${(e as Error).message}`);
  }
  const limit = ctx.device.limits.maxStorageBufferBindingSize;
  const biggest = 4 * Math.max(widestChannels, 3) * (resize.paddedH / 2) * (resize.paddedW / 2);
  if (biggest > limit) {
    throw new CalibrationError(
      `${imageName(image, index)} (${image.width}x${image.height}) resized to ${resize.outW}x${resize.outH} needs a ${Math.round(biggest / 2 ** 20)} MiB feature map, over this adapter's ${Math.round(limit / 2 ** 20)} MiB storage binding limit`,
    );
  }
  return resize;
}

/** Uploads one image and records its preprocessing into `rec`; returns the [3, H, W] input. */
export function recordCalibrationImage(rec: Recorder, image: CalibrationImage, resize: ResizePlan, table: GpuTensor): GpuTensor {
  const { image: input, output } = recordPreprocess(rec, resize, table, { label: 'calibration preprocess' });
  input.write(image.data, image.data.length === image.width * image.height * 3 ? 3 : 4);
  return output;
}

export function normalizationTensor(ctx: GpuContext, meta: MaskRCNNMeta): GpuTensor {
  return { buffer: ctx.upload('calibration normalization', normalizationTable(meta.imageMean, meta.imageStd)), shape: [256, 3], label: 'normalization' };
}

/** precise BN over the images: returns a copy of `tensors` with the body's running statistics replaced. */
async function reestimateStatistics(ctx: GpuContext, tensors: Map<string, Tensor>, meta: MaskRCNNMeta, o: ResolvedCalibration): Promise<{ tensors: Map<string, Tensor>; layers: number }> {
  const body = new TrainModeBody(ctx, tensors, meta.eps);
  const table = normalizationTensor(ctx, meta);
  const acc = new BnAccumulator(body);
  const widest = Math.max(...body.layers.map((l) => l.channels));
  try {
    for (let i = 0; i < o.images.length; i++) {
      const image = o.images[i];
      const resize = calibrationResize(ctx, image, i, meta, widest);
      const rec = new Recorder(ctx, 'calibration statistics');
      try {
        const stats = await ctx.checked(`calibrating on ${imageName(image, i)}`, async () => {
          const input = recordCalibrationImage(rec, image, resize, table);
          const out = rec.output('bn statistics', [body.totalChannels, 2]);
          const planes = body.record(rec, input, out);
          rec.release(input);
          rec.submit();
          return { values: await ctx.readF32(out.buffer, 2 * body.totalChannels), planes };
        });
        const bad = body.layers.find((l) => !stats.values.subarray(2 * l.offset, 2 * (l.offset + l.channels)).every(Number.isFinite));
        if (bad) throw nonFinite(`${imageName(image, i)} gives non-finite batch statistics at '${bad.bn}'`);
        acc.add(stats.values, stats.planes);
      } finally {
        rec.destroy();
      }
      o.onProgress('statistics', i + 1, o.images.length);
    }
  } finally {
    body.destroy();
    ctx.release(table.buffer);
  }
  const out = new Map(tensors);
  acc.writeBack(out);
  return { tensors: out, layers: body.layers.length };
}

/**
 * Calibrates `pruned` (canonical keys) on the images; `dense` is the unpruned state dict the
 * least-squares mode reconstructs towards. Returns new tensors (the inputs are not modified).
 */
export async function calibrate(
  ctx: GpuContext,
  input: {
    pruned: Map<string, Tensor>;
    dense: Map<string, Tensor>;
    meta: MaskRCNNMeta;
    metadata: Record<string, string>;
    /** Channels each group kept (compact filter pruning); undefined when the layers kept their shapes (mask mode, kernel granularity). */
    kept?: Map<string, number[]>;
  },
  resolved: ResolvedCalibration,
): Promise<{ tensors: Map<string, Tensor>; report: CalibrationReport }> {
  const t0 = performance.now();
  const o = { ...resolved, mode: resolved.mode ?? (input.kept ? 'stats+lsq' : 'stats') } as const;
  if (o.mode !== 'stats' && !input.kept) {
    throw new CalibrationError(
      `calibration mode '${o.mode}' refits the layers whose channels were removed, which needs compact mode and filter granularity; use mode 'stats' for masked or kernel-pruned models`,
    );
  }
  ctx.resetPeak();
  let tensors = input.pruned;
  const report: CalibrationReport = { mode: o.mode, images: o.images.length, seconds: 0, peakGpuBytes: 0 };
  if (o.mode === 'stats' || o.mode === 'stats+lsq') {
    const t = performance.now();
    const r = await reestimateStatistics(ctx, tensors, input.meta, o);
    tensors = r.tensors;
    report.stats = { layers: r.layers, images: o.images.length, seconds: (performance.now() - t) / 1000 };
  }
  if (o.mode === 'lsq' || o.mode === 'stats+lsq') {
    const images = o.images.slice(0, o.leastSquares.images);
    const settings = { ridge: o.leastSquares.ridge, maxBytes: o.leastSquares.maxBytes, positions: o.leastSquares.positions };
    const r = await reconstructBody(ctx, { pruned: tensors, dense: input.dense, meta: input.meta, kept: input.kept! }, images, {
      ...settings,
      onProgress: (done, total) => o.onProgress('least squares (body)', done, total),
    });
    tensors = r.tensors;
    report.leastSquares = r.report;
    if (o.leastSquares.heads) {
      const t = performance.now();
      const h = await reconstructHeads(ctx, { pruned: tensors, dense: input.dense, meta: input.meta, metadata: input.metadata, kept: input.kept! }, images, {
        ...settings,
        boxRois: o.leastSquares.boxRois,
        maskRois: o.leastSquares.maskRois,
        onProgress: (done, total) => o.onProgress('least squares (heads)', done, total),
      });
      tensors = h.tensors;
      report.leastSquares.layers.push(...h.fits);
      report.leastSquares.seconds += (performance.now() - t) / 1000;
      report.leastSquares.skipped = h.skipped;
    }
  }
  // A float16 file must hold every calibrated value.
  for (const [key, t] of tensors) {
    if (t.dtype !== 'F16' || t === input.pruned.get(key)) continue;
    const i = t.data.findIndex((v) => Math.abs(v) > 65504);
    if (i >= 0) throw new CalibrationError(`calibration gives '${key}' a value of ${t.data[i]}, beyond float16's range (65504): write the file as float32 (maskgpu prune --dtype f32)`);
  }
  // The loader's own checks (finite values, folds that stay finite) on what will be written.
  try {
    loadMaskRCNNWeights({ metadata: input.metadata, tensors });
  } catch (e) {
    if (e instanceof WeightsError) throw nonFinite(`the calibrated weights do not load (${e.message})`);
    throw e;
  }
  report.seconds = (performance.now() - t0) / 1000;
  report.peakGpuBytes = ctx.memory.peakBytes;
  return { tensors, report };
}
