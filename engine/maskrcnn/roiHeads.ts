// RoI heads (torchvision RoIHeads, eval) on the GPU: MultiScaleRoIAlign 7x7 -> fc6 -> fc7 ->
// class scores + box deltas -> softmax/decode/clip/filter -> one sort -> per-class greedy NMS ->
// the best detections_per_img; then the mask branch on those detections: MultiScaleRoIAlign
// 14x14 -> 4 x (conv3x3 + ReLU) -> ConvTranspose2d + ReLU -> 1x1 logits -> sigmoid of the
// predicted class -> paste into the original image as bit-packed binary masks. The mask convs
// read the kept count on the GPU and skip the padding RoIs (typically most of the 100 slots).

import type { GpuContext } from '../gpu.ts';
import { recordBoxPostprocess } from '../kernels/boxPostprocess.ts';
import type { Conv2d, ConvPrecision } from '../kernels/conv2d.ts';
import { ConvTranspose2d } from '../kernels/convTranspose2d.ts';
import { recordDetections, type DetectionTensors } from '../kernels/detections.ts';
import { Linear } from '../kernels/linear.ts';
import { MaskLogits } from '../kernels/maskLogits.ts';
import { GreedyNms } from '../kernels/nms.ts';
import { PasteMasks } from '../kernels/pasteMasks.ts';
import type { ResizePlan } from '../kernels/preprocess.ts';
import { RoiAlignMultiLevel } from '../kernels/roiAlign.ts';
import { SortDescending } from '../kernels/sort.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import type { MaskRCNNWeights } from '../../weights-loader/maskrcnn.ts';
import { convFromParams } from './layers.ts';
import type { ResolvedOptions } from './options.ts';
import type { Proposals } from './rpn.ts';

/** torchvision RoIHeads' box coder weights. */
export const BOX_CODER_WEIGHTS: [number, number, number, number] = [10, 10, 5, 5];

/** The box branch's result: what the mask branch and the read-back need. */
export interface BoxDetections extends DetectionTensors {
  maxDetections: number;
  /** u32[1]: detections kept. */
  keptCount: Tensor;
}

export class RoiHeads {
  private readonly fc6: Linear;
  private readonly fc7: Linear;
  private readonly clsScore: Linear;
  private readonly bboxPred: Linear;
  private readonly maskConvs: Conv2d[];
  private readonly deconv: ConvTranspose2d;
  private readonly maskLogits: MaskLogits;
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
    this.maskConvs = w.maskHead.map((p, i) => convFromParams(ctx, p, `roi_heads.mask_head.${i}`, { relu: true, precision }));
    const d = w.maskPredictor.deconv;
    this.deconv = new ConvTranspose2d(ctx, { cin: d.cin, cout: d.cout, scale: d.scale, relu: true }, d.weight, d.bias, 'roi_heads.mask_predictor.conv5_mask');
    const l = w.maskPredictor.logits;
    if (l.kh !== 1 || l.kw !== 1) throw new Error(`roi_heads.mask_predictor.mask_fcn_logits is ${l.kh}x${l.kw}; torchvision's mask predictor ends in a 1x1 conv`);
    this.maskLogits = new MaskLogits(ctx, l.cin, l.cout, l.weight, l.bias, precision, 'roi_heads.mask_predictor.mask_fcn_logits');
    this.numClasses = w.meta.numClasses;
    this.fpnChannels = w.fpn.layer[0].cout;
  }

  /**
   * Records the box branch on P2..P5 (`fpn`, kept by the caller) for the proposals (released
   * here): box head, postprocess, per-class NMS; returns the kept detections.
   */
  recordBoxes(rec: Recorder, fpn: Tensor[], proposals: Proposals, resize: ResizePlan, original: { height: number; width: number }, o: ResolvedOptions): BoxDetections {
    const ctx = this.ctx;
    const C = this.numClasses;
    const K = proposals.boxes.shape[0];
    const boxAlign = new RoiAlignMultiLevel(ctx, { channels: this.fpnChannels, outputSize: 7, samplingRatio: 2, maxRois: K }, 'roi_heads.box_roi_pool');
    const pooled = boxAlign.record(rec, { features: fpn, boxes: proposals.boxes, count: proposals.count, imageHeight: resize.outH });
    const x6 = this.fc6.record(rec, pooled);
    rec.release(pooled);
    const x7 = this.fc7.record(rec, x6);
    rec.release(x6);
    const classLogits = this.clsScore.record(rec, x7);
    const boxDeltas = this.bboxPred.record(rec, x7);
    rec.release(x7);

    const candidates = recordBoxPostprocess(
      rec,
      { maxProposals: K, classes: C, imageH: resize.outH, imageW: resize.outW, scoreThresh: o.boxScoreThresh, minSize: o.boxMinSize, weights: BOX_CODER_WEIGHTS },
      { proposals: proposals.boxes, proposalCount: proposals.count, classLogits, boxDeltas },
      'det.postprocess',
    );
    rec.release(classLogits, boxDeltas, proposals.boxes, proposals.count);

    const n = K * (C - 1);
    const order = rec.tensor('det.order', [n]);
    const orderCount = rec.tensor('det.order_count', [1]);
    rec.keep(new SortDescending(ctx, n, 'det.sort')).record(rec, { keys: candidates.keys, valid: candidates.valid, outValues: order, outCount: orderCount });
    rec.release(candidates.valid);

    const D = o.detectionsPerImage;
    const kept = rec.tensor('det.kept', [D]);
    const keptCount = rec.tensor('det.count', [1]);
    const nms = new GreedyNms(ctx, { iouThreshold: o.boxNmsThresh, maxKeep: D, coordinateTrickMaxCount: o.nmsCoordinateTrickMax }, 'det.nms');
    nms.record(rec, { boxes: candidates.boxes, groups: candidates.group, order, count: orderCount, keep: kept, keepCount: keptCount }, n);
    rec.release(order, orderCount);

    const detections = recordDetections(
      rec,
      // transform.postprocess: ratio = float32(original) / float32(resized).
      { maxDetections: D, ratioH: Math.fround(original.height / resize.outH), ratioW: Math.fround(original.width / resize.outW) },
      { candidates: { ...candidates }, kept, keptCount },
      'det',
    );
    rec.release(candidates.boxes, candidates.keys, candidates.group, kept);
    return { ...detections, maxDetections: D, keptCount };
  }

  /**
   * Records the mask branch for the kept detections on P2..P5 (released here): RoIAlign 14x14,
   * the mask head, the predicted class's probabilities; returns them, [D, 28, 28].
   */
  recordMaskProbs(rec: Recorder, fpn: Tensor[], det: BoxDetections, resize: ResizePlan): Tensor {
    const D = det.maxDetections;
    const maskAlign = new RoiAlignMultiLevel(this.ctx, { channels: this.fpnChannels, outputSize: 14, samplingRatio: 2, maxRois: D }, 'roi_heads.mask_roi_pool');
    let x = maskAlign.record(rec, { features: fpn, boxes: det.boxes, count: det.keptCount, imageHeight: resize.outH });
    rec.release(...fpn);
    for (const conv of this.maskConvs) {
      const y = conv.record(rec, x, { batchLimit: det.keptCount });
      rec.release(x);
      x = y;
    }
    const up = this.deconv.record(rec, x, { batchLimit: det.keptCount });
    rec.release(x);
    // Only each detection's own class: mask_fcn_logits and the class selection in one kernel.
    const probs = this.maskLogits.record(rec, { features: up, labels: det.labels, keptCount: det.keptCount });
    rec.release(up, det.labels);
    return probs;
  }

  /** Records paste_masks_in_image at the original size; returns the bit-packed masks [D, H, ceil(W / 32)]. */
  recordPaste(rec: Recorder, probs: Tensor, det: BoxDetections, original: { height: number; width: number }, o: ResolvedOptions): Tensor {
    const paste = rec.keep(new PasteMasks(this.ctx, { maxMasks: det.maxDetections, maskSize: probs.shape[1] }, 'paste_masks'));
    const masks = paste.record(rec, { probs, boxes: det.origBoxes, count: det.keptCount }, { height: original.height, width: original.width, threshold: o.maskThreshold });
    rec.release(det.origBoxes);
    return masks;
  }

  destroy(): void {
    for (const l of [this.fc6, this.fc7, this.clsScore, this.bboxPred]) l.destroy();
    for (const c of [...this.maskConvs, this.maskLogits]) c.destroy();
    this.deconv.destroy();
  }
}
