// RoI heads (torchvision RoIHeads, eval) on the GPU: MultiScaleRoIAlign 7x7 -> fc6 -> fc7 ->
// class scores + box deltas -> softmax/decode/clip/filter -> one sort -> per-class greedy NMS ->
// the best detections_per_img; then the mask branch on those detections: MultiScaleRoIAlign
// 14x14 -> 4 x (conv3x3 + ReLU) -> ConvTranspose2d + ReLU -> 1x1 logits -> sigmoid of the
// predicted class -> paste into the original image as bit-packed binary masks. The mask convs
// read the kept count on the GPU and skip the padding RoIs (typically most of the 100 slots).

import type { GpuContext } from '../gpu.ts';
import type { Conv2d, ConvPrecision } from '../kernels/conv2d.ts';
import { ConvTranspose2d } from '../kernels/convTranspose2d.ts';
import { planBoxPostprocess } from '../kernels/boxPostprocess.ts';
import { planDetections } from '../kernels/detections.ts';
import type { Dispatch } from '../kernels/dispatch.ts';
import { Linear } from '../kernels/linear.ts';
import { planMaskSelect } from '../kernels/maskSelect.ts';
import { GreedyNms } from '../kernels/nms.ts';
import { PasteMasks } from '../kernels/pasteMasks.ts';
import type { ResizePlan } from '../kernels/preprocess.ts';
import { RoiAlignMultiLevel } from '../kernels/roiAlign.ts';
import { SortDescending } from '../kernels/sort.ts';
import type { BufferPool, Tensor } from '../planner.ts';
import type { MaskRCNNWeights } from '../../weights-loader/maskrcnn.ts';
import { makeConv, type FeatureMap } from './backbone.ts';
import type { ResolvedOptions } from './options.ts';
import type { Destroyable, Proposals } from './rpn.ts';
import type { StageMarker } from './stages.ts';

/** torchvision RoIHeads' box coder weights. */
export const BOX_CODER_WEIGHTS: [number, number, number, number] = [10, 10, 5, 5];

export interface DetectionOutputs {
  maxDetections: number;
  /** u32[1]: detections kept. */
  keptCount: Tensor;
  /** [max][6]: x1 y1 x2 y2 (original image), score, label. */
  result: Tensor;
  /** [max][height][ceil(width / 32)] u32: bit-packed binary masks, LSB first. */
  masks: Tensor;
  /** [max][4] boxes in resized-image coordinates (before the scale back). */
  boxes: Tensor;
  /** [max][28][28] mask probabilities of the predicted class. */
  maskProbs: Tensor;
}

export class RoiHeads {
  private readonly fc6: Linear;
  private readonly fc7: Linear;
  private readonly clsScore: Linear;
  private readonly bboxPred: Linear;
  private readonly maskConvs: Conv2d[];
  private readonly deconv: ConvTranspose2d;
  private readonly maskLogits: Conv2d;
  readonly numClasses: number;
  private readonly fpnChannels: number;

  constructor(
    private readonly ctx: GpuContext,
    w: MaskRCNNWeights,
    precision: ConvPrecision = 'f32',
  ) {
    const lin = (p: MaskRCNNWeights['boxHead']['fc6'], relu: boolean, label: string) => new Linear(ctx, p.inFeatures, p.outFeatures, p.weight, p.bias, relu, label);
    this.fc6 = lin(w.boxHead.fc6, true, 'roi_heads.box_head.fc6');
    this.fc7 = lin(w.boxHead.fc7, true, 'roi_heads.box_head.fc7');
    this.clsScore = lin(w.boxPredictor.cls, false, 'roi_heads.box_predictor.cls_score');
    this.bboxPred = lin(w.boxPredictor.bbox, false, 'roi_heads.box_predictor.bbox_pred');
    this.maskConvs = w.maskHead.map((p, i) => makeConv(ctx, p, `roi_heads.mask_head.${i}`, { relu: true, precision }));
    const d = w.maskPredictor.deconv;
    this.deconv = new ConvTranspose2d(ctx, { cin: d.cin, cout: d.cout, scale: d.scale, relu: true }, d.weight, d.bias, 'roi_heads.mask_predictor.conv5_mask');
    this.maskLogits = makeConv(ctx, w.maskPredictor.logits, 'roi_heads.mask_predictor.mask_fcn_logits', { precision });
    this.numClasses = w.meta.numClasses;
    this.fpnChannels = w.fpn.layer[0].cout;
  }

  plan(
    pool: BufferPool,
    levels: FeatureMap[],
    proposals: Proposals,
    resize: ResizePlan,
    original: { height: number; width: number },
    o: ResolvedOptions,
    out: Dispatch[],
    keep: Destroyable[],
    mark?: StageMarker,
  ): DetectionOutputs {
    const ctx = this.ctx;
    const C = this.numClasses;
    const K = proposals.maxProposals;
    const fpn = levels.slice(0, 4);
    const levelShapes = fpn.map((l) => ({ h: l.h, w: l.w }));

    // ---- box branch ----------------------------------------------------------------------------
    const boxAlign = new RoiAlignMultiLevel(ctx, { channels: this.fpnChannels, outputSize: 7, samplingRatio: 2, maxRois: K }, 'roi_heads.box_roi_pool');
    keep.push(boxAlign);
    const pooled = pool.tensor('box_roi_pool', [K, this.fpnChannels, 7, 7]);
    out.push(
      ...[boxAlign.plan({ features: fpn.map((l) => l.buffer), boxes: proposals.boxes.buffer, count: proposals.count.buffer, output: pooled.buffer }, { levels: levelShapes, imageHeight: resize.outH })].flat(),
    );
    const x6 = pool.tensor('fc6', [K, this.fc6.outFeatures]);
    out.push(this.fc6.plan(K, { input: pooled.buffer, output: x6.buffer }));
    pool.release(pooled);
    const x7 = pool.tensor('fc7', [K, this.fc7.outFeatures]);
    out.push(this.fc7.plan(K, { input: x6.buffer, output: x7.buffer }));
    pool.release(x6);
    const logits = pool.tensor('class_logits', [K, C]);
    const deltas = pool.tensor('box_regression', [K, 4 * C]);
    out.push(this.clsScore.plan(K, { input: x7.buffer, output: logits.buffer }));
    out.push(this.bboxPred.plan(K, { input: x7.buffer, output: deltas.buffer }));
    pool.release(x7);

    const n = K * (C - 1);
    const candBoxes = pool.tensor('det.cand_boxes', [n, 4]);
    const candKeys = pool.tensor('det.cand_keys', [n]);
    const candGroup = pool.tensor('det.cand_group', [n]);
    const candValid = pool.tensor('det.cand_valid', [n]);
    out.push(
      planBoxPostprocess(
        ctx,
        { maxProposals: K, classes: C, imageH: resize.outH, imageW: resize.outW, scoreThresh: o.boxScoreThresh, minSize: o.boxMinSize, weights: BOX_CODER_WEIGHTS },
        {
          proposals: proposals.boxes.buffer,
          proposalCount: proposals.count.buffer,
          classLogits: logits.buffer,
          boxDeltas: deltas.buffer,
          candBoxes: candBoxes.buffer,
          candKeys: candKeys.buffer,
          candGroup: candGroup.buffer,
          candValid: candValid.buffer,
        },
      ),
    );
    pool.release(logits, deltas, proposals.boxes, proposals.count);

    const order = pool.tensor('det.order', [n]);
    const orderCount = pool.tensor('det.order_count', [1]);
    const sort = new SortDescending(ctx, n, 'det.sort');
    keep.push(sort);
    out.push(...sort.plan({ keys: candKeys.buffer, valid: candValid.buffer, outValues: order.buffer, outCount: orderCount.buffer }));
    pool.release(candValid);

    const D = o.detectionsPerImage;
    const kept = pool.tensor('det.kept', [D]);
    const keptCount = pool.tensor('det.count', [1]);
    const nms = new GreedyNms(ctx, { iouThreshold: o.boxNmsThresh, maxKeep: D, coordinateTrickMaxCount: o.nmsCoordinateTrickMax }, 'det.nms');
    keep.push(nms);
    out.push(nms.plan({ boxes: candBoxes.buffer, groups: candGroup.buffer, order: order.buffer, count: orderCount.buffer, keep: kept.buffer, keepCount: keptCount.buffer }, n));
    pool.release(order, orderCount);

    const boxes = pool.tensor('det.boxes', [D, 4]);
    const result = pool.tensor('det.result', [D, 6]);
    const labels = pool.tensor('det.labels', [D]);
    const origBoxes = pool.tensor('det.orig_boxes', [D, 4]);
    out.push(
      planDetections(
        ctx,
        // transform.postprocess: ratio = float32(original) / float32(resized).
        { maxDetections: D, ratioH: Math.fround(original.height / resize.outH), ratioW: Math.fround(original.width / resize.outW) },
        { candBoxes: candBoxes.buffer, candKeys: candKeys.buffer, candGroup: candGroup.buffer, kept: kept.buffer, keptCount: keptCount.buffer, boxes: boxes.buffer, result: result.buffer, labels: labels.buffer, origBoxes: origBoxes.buffer },
      ),
    );
    pool.release(candBoxes, candKeys, candGroup, kept);

    // ---- mask branch ---------------------------------------------------------------------------
    mark?.('maskHead');
    const maskAlign = new RoiAlignMultiLevel(ctx, { channels: this.fpnChannels, outputSize: 14, samplingRatio: 2, maxRois: D }, 'roi_heads.mask_roi_pool');
    keep.push(maskAlign);
    let x = pool.tensor('mask_roi_pool', [D, this.fpnChannels, 14, 14]);
    out.push(...[maskAlign.plan({ features: fpn.map((l) => l.buffer), boxes: boxes.buffer, count: keptCount.buffer, output: x.buffer }, { levels: levelShapes, imageHeight: resize.outH })].flat());
    for (const l of levels) pool.release(l);
    let size = 14;
    for (const conv of this.maskConvs) {
      const y = pool.tensor(conv.label, [D, conv.spec.cout, size, size]);
      out.push(conv.plan({ batch: D, h: size, w: size }, { input: x.buffer, output: y.buffer, batchLimit: keptCount.buffer }));
      pool.release(x);
      x = y;
    }
    const up = pool.tensor('conv5_mask', [D, this.deconv.spec.cout, size * 2, size * 2]);
    out.push(this.deconv.plan({ batch: D, h: size, w: size }, { input: x.buffer, output: up.buffer, batchLimit: keptCount.buffer }));
    pool.release(x);
    size *= 2;
    const maskLogits = pool.tensor('mask_logits', [D, C, size, size]);
    out.push(this.maskLogits.plan({ batch: D, h: size, w: size }, { input: up.buffer, output: maskLogits.buffer, batchLimit: keptCount.buffer }));
    pool.release(up);
    const maskProbs = pool.tensor('mask_probs', [D, size, size]);
    out.push(planMaskSelect(ctx, { maxDetections: D, classes: C, pixels: size * size }, { logits: maskLogits.buffer, labels: labels.buffer, keptCount: keptCount.buffer, probs: maskProbs.buffer }));
    pool.release(maskLogits, labels);

    const rowWords = Math.ceil(original.width / 32);
    const masks = pool.tensor('masks', [D, original.height, rowWords]);
    const paste = new PasteMasks(ctx, { maxMasks: D, maskSize: size }, 'paste_masks');
    keep.push(paste);
    mark?.('paste');
    out.push(
      ...[paste.plan({ probs: maskProbs.buffer, boxes: origBoxes.buffer, count: keptCount.buffer, output: masks.buffer }, { height: original.height, width: original.width, threshold: o.maskThreshold })].flat(),
    );
    pool.release(origBoxes);
    return { maxDetections: D, keptCount, result, masks, boxes, maskProbs };
  }

  destroy(): void {
    for (const l of [this.fc6, this.fc7, this.clsScore, this.bboxPred]) l.destroy();
    for (const c of [...this.maskConvs, this.maskLogits]) c.destroy();
    this.deconv.destroy();
  }
}
