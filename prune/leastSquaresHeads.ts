// Least-squares reconstruction of the pruned FPN-side layers: the RPN head and the RoI heads (box
// head fc6/fc7 and predictors, mask head convs, the mask predictor), after the body has been
// refitted (leastSquares.ts). Same principle (He et al. 2017): each layer whose channels changed
// is refitted, in network order, so that on the pruned network's input it reproduces the
// unpruned network's (pre-activation) output; the layers that consume pruned channels but are
// never pruned themselves (RPN cls_logits/bbox_pred, the box predictor, mask_fcn_logits) are
// refitted too. These layers have their own bias and no BatchNorm, so the solution is written as
// it is: weight rows and bias.
//
// The RoIs: both networks are pooled at the same boxes, the unpruned model's own, so that
// features and targets describe the same regions: its RPN proposals (best first, at most
// `boxRois`) for the box head and its detections (best first, at most `maskRois`) for the mask
// head; both come from the engine's own Rpn and RoiHeads on the unpruned weights. Per image the
// FPN levels of both networks are computed once and kept on the GPU; every later pass starts
// from them.
//
// The mask predictor's ConvTranspose2d (kernel = stride = 2) is fitted as the 1x1 conv to
// Cout * 4 rows (o, ky, kx) it is (engine/kernels/convTranspose2d.ts); its bias, shared by the 4
// taps of a channel, becomes the mean of the 4 fitted intercepts. fc6's fit is skipped when its
// normal equations (C * 49 + 1 features) exceed a storage binding (full-size models: 12545).

import type { Conv2d } from '../engine/kernels/conv2d.ts';
import type { ConvTranspose2d } from '../engine/kernels/convTranspose2d.ts';
import type { Linear } from '../engine/kernels/linear.ts';
import { normalEquationsSize } from '../engine/kernels/normalEquations.ts';
import { RoiAlignMultiLevel } from '../engine/kernels/roiAlign.ts';
import type { GpuContext } from '../engine/gpu.ts';
import { ResNetFpn } from '../engine/maskrcnn/backbone.ts';
import { resolveOptions } from '../engine/maskrcnn/options.ts';
import { RoiHeads } from '../engine/maskrcnn/roiHeads.ts';
import { Rpn } from '../engine/maskrcnn/rpn.ts';
import type { Tensor as GpuTensor } from '../engine/planner.ts';
import type { Recorder } from '../engine/recorder.ts';
import { loadMaskRCNNWeights, type MaskRCNNMeta } from '../weights-loader/maskrcnn.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';
import type { ResizePlan } from '../engine/kernels/preprocess.ts';
import { calibrationResize, normalizationTensor, recordCalibrationImage } from './calibration.ts';
import { imageName, type CalibrationImage } from './calibrationOptions.ts';
import { GpuPasses, type FitJob, type FitSample, type Kept } from './gpuPasses.ts';
import type { LayerFit, LeastSquaresOptions } from './leastSquares.ts';
import { biasConv, deconv, deconvAs1x1, linear, stackedConv, writeBiasFit } from './headLayers.ts';

export interface HeadsOptions extends LeastSquaresOptions {
  /** Unpruned-model proposals per image the box head is fitted on (best first). */
  boxRois: number;
  /** Unpruned-model detections per image the mask head is fitted on (best first). */
  maskRois: number;
}

interface HeadImage {
  resize: ResizePlan;
  d: Kept[];
  p: Kept[];
  proposals: Float32Array;
  detections: Float32Array;
}

const view = (t: GpuTensor, shape: number[]): GpuTensor => ({ ...t, shape });
const all = (n: number) => [...Array(n).keys()];

export async function reconstructHeads(
  ctx: GpuContext,
  input: { pruned: Map<string, Tensor>; dense: Map<string, Tensor>; meta: MaskRCNNMeta; metadata: Record<string, string>; kept: Map<string, number[]> },
  allImages: CalibrationImage[],
  o: HeadsOptions,
): Promise<{ tensors: Map<string, Tensor>; fits: LayerFit[]; images: number; skipped: string[] }> {
  const { dense, meta } = input;
  const t = new Map(input.pruned);
  const shape = (m: Map<string, Tensor>, key: string) => m.get(`${key}.weight`)!.shape;
  const changed = (name: string) => shape(t, name).join() !== shape(dense, name).join();
  const keptRows = (group: string, n: number) => input.kept.get(group) ?? all(n);
  const fpnChannels = shape(dense, 'backbone.fpn.layer_blocks.0.0')[0];

  // Images whose kept FPN levels (both networks) fit in maxBytes.
  const resizes = allImages.map((im, i) => calibrationResize(ctx, im, i, meta, fpnChannels));
  const images: CalibrationImage[] = [];
  let bytes = 0;
  for (let i = 0; i < allImages.length; i++) {
    const r = resizes[i];
    const need = 2 * 4 * fpnChannels * Math.ceil(1.34 * (r.paddedH / 4) * (r.paddedW / 4));
    if (images.length && bytes + need > o.maxBytes) break;
    bytes += need;
    images.push(allImages[i]);
  }

  const denseWeights = loadMaskRCNNWeights({ metadata: input.metadata, tensors: dense });
  const prunedWeights = loadMaskRCNNWeights({ metadata: input.metadata, tensors: t });
  const options = resolveOptions({}, meta);
  const gpu = new GpuPasses(ctx);
  const table = normalizationTensor(ctx, meta);
  const built: Array<{ destroy(): void }> = [];
  const make = <T extends { destroy(): void }>(x: T): T => (built.push(x), x);
  const fits: LayerFit[] = [];
  const skipped: string[] = [];
  const data: HeadImage[] = [];

  // Which fits run, for the progress total.
  const rpnConv = 'rpn.head.conv.0.0';
  const fc6 = 'roi_heads.box_head.fc6';
  const fc7 = 'roi_heads.box_head.fc7';
  const maskConvs = [0, 1, 2, 3].map((k) => `roi_heads.mask_head.${k}.0`);
  const conv5 = 'roi_heads.mask_predictor.conv5_mask';
  const logits = 'roi_heads.mask_predictor.mask_fcn_logits';
  const fc6Size = normalEquationsSize({ cin: shape(t, fc6)[1], kernel: [1, 1], targets: shape(t, fc6)[0] });
  const fc6Fits = fc6Size.features * fc6Size.columns * 4 <= ctx.device.limits.maxStorageBufferBindingSize;
  const plan = {
    rpnConv: changed(rpnConv),
    rpnPreds: changed('rpn.head.cls_logits') || changed('rpn.head.bbox_pred'),
    fc6: changed(fc6) && fc6Fits,
    fc7: changed(fc7),
    boxPreds: changed('roi_heads.box_predictor.cls_score') || changed('roi_heads.box_predictor.bbox_pred'),
    mask: maskConvs.map(changed),
    conv5: changed(conv5),
    logits: changed(logits),
  };
  if (changed(fc6) && !fc6Fits) skipped.push(`${fc6} (${fc6Size.features - 1} inputs: its normal equations exceed a storage binding)`);
  const passes = [plan.rpnConv, plan.rpnPreds, plan.fc6, plan.fc7, plan.boxPreds, ...plan.mask, plan.conv5, plan.logits].filter(Boolean).length;
  const total = images.length * (2 + passes);
  let done = 0;
  const tick = () => o.onProgress(++done, total);

  try {
    // Per image: both networks' FPN levels, the unpruned model's proposals and detections.
    const bodyD = make(new ResNetFpn(ctx, denseWeights));
    const bodyP = make(new ResNetFpn(ctx, prunedWeights));
    const rpnD = make(new Rpn(ctx, denseWeights.rpn));
    const headsD = make(new RoiHeads(ctx, denseWeights));
    for (let i = 0; i < images.length; i++) {
      const im = images[i];
      const resize = resizes[i];
      const k = await gpu.run(`least squares, heads: FPN and proposals, ${imageName(im, i)}`, (rec) => {
        const x = recordCalibrationImage(rec, im, resize, table);
        const lvD = bodyD.recordFpn(rec, bodyD.recordBody(rec, x));
        const lvP = bodyP.recordFpn(rec, bodyP.recordBody(rec, x));
        rec.release(x);
        const props = rpnD.record(rec, lvD, resize, options);
        return { ...Object.fromEntries(lvD.map((l, j) => [`d${j}`, l])), ...Object.fromEntries(lvP.map((l, j) => [`p${j}`, l])), boxes: props.boxes, count: props.count } as Record<string, GpuTensor>;
      });
      const nProps = Math.min((await ctx.readU32(k.count.tensor.buffer, 1))[0], k.boxes.tensor.shape[0]);
      const proposals = await ctx.readF32(k.boxes.tensor.buffer, nProps * 4);
      gpu.drop(k.count);
      gpu.drop(k.boxes);
      const levels = (p: string) => [0, 1, 2, 3, 4].map((j) => k[`${p}${j}`]);
      tick();
      const det = await gpu.run(`least squares, heads: detections, ${imageName(im, i)}`, (rec) => {
        const boxes = rec.tensor('proposals', [Math.max(nProps, 1), 4]);
        ctx.write(boxes.buffer, proposals.length ? proposals : new Float32Array(4));
        const count = rec.tensor('proposal count', [1]);
        ctx.write(count.buffer, new Uint32Array([nProps]));
        const r = headsD.recordBoxes(rec, levels('d').slice(0, 4).map((l) => l.tensor), { boxes, count }, resize, { height: im.height, width: im.width }, options);
        return { boxes: r.boxes, count: r.keptCount };
      });
      const nDets = (await ctx.readU32(det.count.tensor.buffer, 1))[0];
      const detections = await ctx.readF32(det.boxes.tensor.buffer, Math.min(nDets, o.maskRois) * 4);
      gpu.drop(det.count);
      gpu.drop(det.boxes);
      data.push({ resize, d: levels('d'), p: levels('p'), proposals: proposals.subarray(0, Math.min(nProps, o.boxRois) * 4), detections });
      tick();
    }
    for (const b of [bodyD, bodyP, rpnD, headsD]) b.destroy();
    built.length = 0;

    /** Refits `name` (or the stacked `names`) from the samples `record` gives, then writes it back. */
    const fitBiasLayer = async (names: string[], kind: 'conv' | 'linear' | 'deconv', spec: FitJob['spec'], record: FitJob['record'], keep?: (rec: Recorder, i: number) => Record<string, GpuTensor>) => {
      const {
        solutions: [solution],
        kept,
      } = await gpu.fit([{ name: names.join('+'), spec, record }], images.length, { positions: o.positions, ridge: o.ridge, label: `least squares: ${names.join('+')}`, tick, keep });
      if (!solution) skipped.push(`${names.join('+')} (no RoI on any calibration image)`);
      else fits.push(writeBiasFit(t, names, kind, solution));
      return kept;
    };
    const boxes = (rec: Recorder, d: Float32Array) => ({ boxes: rec.input('rois', d.length ? d : new Float32Array(4), [Math.max(d.length / 4, 1), 4]), count: rec.input('roi count', new Uint32Array([d.length / 4])) });
    const pool = (rec: Recorder, levels: Kept[], rois: Float32Array, size: number, h: number) => {
      const n = rois.length / 4;
      const align = new RoiAlignMultiLevel(ctx, { channels: fpnChannels, outputSize: size, samplingRatio: 2, maxRois: Math.max(n, 1) }, `roi align ${size}`);
      return align.record(rec, { features: levels.slice(0, 4).map((l) => l.tensor), ...boxes(rec, rois), imageHeight: h });
    };
    const conv1x1Spec = (cin: number, targets: number): FitJob['spec'] => ({ cin, kernel: [1, 1], targets });
    const convSpec = (name: string): FitJob['spec'] => {
      const [cout, cin, kh, kw] = shape(t, name);
      return { cin, kernel: [kh, kw], padding: [(kh - 1) / 2, (kw - 1) / 2], targets: cout };
    };

    // RPN: the shared 3x3 conv, then both predictors as one stacked target, over all 5 levels.
    if (plan.rpnConv) {
      const target = make(biasConv(ctx, dense, rpnConv, { rows: keptRows(rpnConv, shape(dense, rpnConv)[0]) }));
      await fitBiasLayer([rpnConv], 'conv', convSpec(rpnConv), (rec, i) => {
        const samples: FitSample[] = data[i].p.map((l, j) => ({ input: l.tensor, target: target.record(rec, data[i].d[j].tensor) }));
        return { samples, release: samples.map((s) => s.target) };
      });
    }
    if (plan.rpnPreds) {
      const names = ['rpn.head.cls_logits', 'rpn.head.bbox_pred'];
      const hiddenD = make(biasConv(ctx, dense, rpnConv, { relu: true }));
      const hiddenP = make(biasConv(ctx, t, rpnConv, { relu: true }));
      const target = make(stackedConv(ctx, dense, names, 'rpn predictors'));
      const spec = conv1x1Spec(shape(t, names[0])[1], names.reduce((a, n) => a + shape(t, n)[0], 0));
      await fitBiasLayer(names, 'conv', spec, (rec, i) => {
        const release: GpuTensor[] = [];
        const samples: FitSample[] = data[i].p.map((l, j) => {
          const hd = hiddenD.record(rec, data[i].d[j].tensor);
          const y = target.record(rec, hd);
          rec.release(hd);
          const hp = hiddenP.record(rec, l.tensor);
          release.push(y, hp);
          return { input: hp, target: y };
        });
        return { samples, release };
      });
    }

    // Box head on the unpruned model's proposals.
    const boxChain = (rec: Recorder, i: number, net: Map<string, Tensor>, upTo: 'pooled' | 'fc6' | 'fc7', layers: { fc6?: Linear; fc7?: Linear }): GpuTensor => {
      const n = data[i].proposals.length / 4;
      let x = pool(rec, net === dense ? data[i].d : data[i].p, data[i].proposals, 7, data[i].resize.outH);
      x = view(x, [Math.max(n, 1), fpnChannels * 49]);
      if (upTo === 'pooled') return x;
      const y6 = layers.fc6!.record(rec, x);
      rec.release(x);
      if (upTo === 'fc6') return y6;
      const y7 = layers.fc7!.record(rec, y6);
      rec.release(y6);
      return y7;
    };
    const as4d = (x: GpuTensor) => view(x, [x.shape[0], x.shape[1], 1, 1]);
    const boxSamples = (rec: Recorder, i: number, x: GpuTensor, y: GpuTensor) =>
      data[i].proposals.length ? { samples: [{ input: as4d(x), target: as4d(y) }], release: [x, y] } : { samples: [], release: [x, y] };
    if (plan.fc6) {
      const target = make(linear(ctx, dense, [fc6], false, keptRows(fc6, shape(dense, fc6)[0])));
      await fitBiasLayer([fc6], 'linear', conv1x1Spec(fpnChannels * 49, shape(t, fc6)[0]), (rec, i) => {
        const xd = boxChain(rec, i, dense, 'pooled', {});
        const y = target.record(rec, xd);
        rec.release(xd);
        return boxSamples(rec, i, boxChain(rec, i, t, 'pooled', {}), y);
      });
    }
    if (plan.fc7) {
      const d6 = make(linear(ctx, dense, [fc6], true));
      const p6 = make(linear(ctx, t, [fc6], true));
      const target = make(linear(ctx, dense, [fc7], false, keptRows(fc7, shape(dense, fc7)[0])));
      await fitBiasLayer([fc7], 'linear', conv1x1Spec(shape(t, fc7)[1], shape(t, fc7)[0]), (rec, i) => {
        const xd = boxChain(rec, i, dense, 'fc6', { fc6: d6 });
        const y = target.record(rec, xd);
        rec.release(xd);
        return boxSamples(rec, i, boxChain(rec, i, t, 'fc6', { fc6: p6 }), y);
      });
    }
    if (plan.boxPreds) {
      const names = ['roi_heads.box_predictor.cls_score', 'roi_heads.box_predictor.bbox_pred'];
      const layersD = { fc6: make(linear(ctx, dense, [fc6], true)), fc7: make(linear(ctx, dense, [fc7], true)) };
      const layersP = { fc6: make(linear(ctx, t, [fc6], true)), fc7: make(linear(ctx, t, [fc7], true)) };
      const target = make(linear(ctx, dense, names, false));
      await fitBiasLayer(names, 'linear', conv1x1Spec(shape(t, names[0])[1], names.reduce((a, n) => a + shape(t, n)[0], 0)), (rec, i) => {
        const xd = boxChain(rec, i, dense, 'fc7', layersD);
        const y = target.record(rec, xd);
        rec.release(xd);
        return boxSamples(rec, i, boxChain(rec, i, t, 'fc7', layersP), y);
      });
    }

    // Mask head on the unpruned model's detections. Its layers in order: the 4 convs, the
    // transposed conv (+ReLU), the logits. Per image both networks' input of the layer being
    // fitted is kept, and the next pass moves it one layer on (the pruned one through the layer
    // just refitted), so each layer runs once per network and image.
    const maskNames = [...maskConvs, conv5, logits];
    const maskPlan = [...plan.mask, plan.conv5, plan.logits];
    const maskLayer = (m: Map<string, Tensor>, k: number) => make(k < 4 ? biasConv(ctx, m, maskNames[k], { relu: true }) : deconv(ctx, m, true));
    const maskLayersD = [0, 1, 2, 3, 4].map((k) => maskLayer(dense, k));
    const maskState: Array<{ level: number; d?: Kept; p?: Kept }> = data.map(() => ({ level: -1 }));
    // Built at first use, which comes after the layer's own refit (layers are fitted in order).
    const maskLayersP = new Map<number, Conv2d | ConvTranspose2d>();
    /** Records the inputs of mask layer k for image i (from the kept ones); they are kept for the next pass. */
    const maskInputs = (rec: Recorder, i: number, k: number): Record<string, GpuTensor> => {
      const st = maskState[i];
      let d = st.d?.tensor;
      let p = st.p?.tensor;
      let level = st.level;
      if (level < 0) {
        d = pool(rec, data[i].d, data[i].detections, 14, data[i].resize.outH);
        p = pool(rec, data[i].p, data[i].detections, 14, data[i].resize.outH);
        level = 0;
      }
      for (; level < k; level++) {
        // Pruned layers as refitted so far (every layer before k is final by now).
        if (!maskLayersP.has(level)) maskLayersP.set(level, maskLayer(t, level));
        const layerP = maskLayersP.get(level)!;
        const nd = maskLayersD[level].record(rec, d!);
        const np = layerP.record(rec, p!);
        if (d !== st.d?.tensor) rec.release(d!);
        if (p !== st.p?.tensor) rec.release(p!);
        [d, p] = [nd, np];
      }
      return { d: d!, p: p! };
    };
    for (const [k, name] of maskNames.entries()) {
      if (!maskPlan[k]) continue;
      const target =
        k < 4
          ? make(biasConv(ctx, dense, name, { rows: keptRows(name, shape(dense, name)[0]) }))
          : k === 4
            ? make(deconvAs1x1(ctx, dense, keptRows(conv5, dense.get(`${conv5}.weight`)!.shape[1])))
            : make(biasConv(ctx, dense, logits));
      const spec = k === 4 ? conv1x1Spec(t.get(`${conv5}.weight`)!.shape[0], t.get(`${conv5}.weight`)!.shape[1] * 4) : convSpec(name);
      const kept = await fitBiasLayer(
        [name],
        k === 4 ? 'deconv' : 'conv',
        spec,
        (rec, i, x) => {
          const y = target.record(rec, x.d);
          return data[i].detections.length ? { samples: [{ input: x.p, target: y }], release: [y] } : { samples: [], release: [y] };
        },
        (rec, i) => maskInputs(rec, i, k),
      );
      kept.forEach((kk, i) => {
        for (const old of [maskState[i].d, maskState[i].p]) if (old && old !== kk.d && old !== kk.p) gpu.drop(old);
        maskState[i] = { level: k, d: kk.d, p: kk.p };
      });
    }
  } finally {
    for (const b of built) b.destroy();
    gpu.destroy();
    ctx.release(table.buffer);
  }
  return { tensors: t, fits, images: images.length, skipped };
}
