// Region proposal network (torchvision RegionProposalNetwork, eval), entirely on the GPU:
// shared head on the five FPN levels, per-level top-k on the objectness logits, decode against
// the anchors, clip, small-box removal, then one sort of all candidates and a greedy NMS that
// only compares boxes of the same level (= batched_nms by level) keeping the best post_nms_top_n.

import type { GpuContext } from '../gpu.ts';
import type { Conv2d, ConvPrecision } from '../kernels/conv2d.ts';
import { recordGatherBoxes } from '../kernels/gatherBoxes.ts';
import { GreedyNms } from '../kernels/nms.ts';
import type { ResizePlan } from '../kernels/preprocess.ts';
import { candidateTensors, recordRpnDecode } from '../kernels/rpnDecode.ts';
import { recordRpnScores } from '../kernels/rpnScores.ts';
import { SortDescending } from '../kernels/sort.ts';
import { TopK } from '../kernels/sortTopk.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import type { MaskRCNNWeights } from '../../weights-loader/maskrcnn.ts';
import { cellAnchors, DEFAULT_ANCHOR_SIZES, DEFAULT_ASPECT_RATIOS, levelStrides } from './anchors.ts';
import { convFromParams } from './layers.ts';
import type { ResolvedOptions } from './options.ts';

export interface Proposals {
  /** [maxProposals, 4] boxes (x1, y1, x2, y2) in resized-image coordinates, best first. */
  boxes: Tensor;
  /** u32[1]: how many of them are real. */
  count: Tensor;
}

export class Rpn {
  private readonly conv: Conv2d;
  private readonly cls: Conv2d;
  private readonly bbox: Conv2d;
  private readonly anchors: number;
  private readonly cells: Tensor[];

  constructor(
    private readonly ctx: GpuContext,
    w: MaskRCNNWeights['rpn'],
    precision: ConvPrecision = 'f32',
  ) {
    this.conv = convFromParams(ctx, w.conv, 'rpn.head.conv', { relu: true, precision });
    this.cls = convFromParams(ctx, w.cls, 'rpn.head.cls_logits', { precision });
    this.bbox = convFromParams(ctx, w.bbox, 'rpn.head.bbox_pred', { precision });
    this.anchors = w.numAnchors;
    if (this.anchors !== DEFAULT_ASPECT_RATIOS.length) {
      throw new Error(`rpn.head.cls_logits has ${this.anchors} anchors per location; torchvision's generator has ${DEFAULT_ASPECT_RATIOS.length} (ratios 0.5, 1, 2)`);
    }
    this.cells = DEFAULT_ANCHOR_SIZES.map((s, i) => {
      const label = `rpn.cell_anchors.${i}`;
      return { buffer: ctx.upload(label, cellAnchors(s, DEFAULT_ASPECT_RATIOS)), shape: [this.anchors, 4], label };
    });
  }

  /** Records the RPN on the FPN `levels` (kept by the caller); returns the proposals. */
  record(rec: Recorder, levels: Tensor[], resize: ResizePlan, o: ResolvedOptions): Proposals {
    const ctx = this.ctx;
    const A = this.anchors;
    if (levels.length !== this.cells.length) throw new Error(`RPN expects ${this.cells.length} feature levels, got ${levels.length}`);
    const sizes = levels.map((l) => ({ h: l.shape[1], w: l.shape[2] }));
    const strides = levelStrides(resize.paddedH, resize.paddedW, sizes);
    const ks = sizes.map((l) => Math.min(o.rpnPreNmsTopN, l.h * l.w * A));
    const total = ks.reduce((a, b) => a + b, 0);
    const candidates = candidateTensors(rec, 'rpn.cand', total);

    let offset = 0;
    levels.forEach((level, li) => {
      const { h, w } = sizes[li];
      const t = this.conv.record(rec, level);
      const logits = this.cls.record(rec, t);
      const deltas = this.bbox.record(rec, t);
      rec.release(t);
      const scores = recordRpnScores(rec, logits, `rpn.scores${li}`);
      rec.release(logits);
      const k = ks[li];
      const topLogits = rec.tensor(`rpn.top_logits${li}`, [k]);
      const topIndex = rec.tensor(`rpn.top_index${li}`, [k]);
      const topk = rec.keep(new TopK(ctx, h * w * A, k, `rpn.topk${li}`));
      topk.record(rec, { keys: scores, outKeys: topLogits, outValues: topIndex });
      rec.release(scores);
      recordRpnDecode(
        rec,
        {
          k,
          offset,
          level: li,
          anchors: A,
          h,
          w,
          strideH: strides[li].h,
          strideW: strides[li].w,
          imageH: resize.outH,
          imageW: resize.outW,
          minSize: o.rpnMinSize,
          scoreThresh: o.rpnScoreThresh,
        },
        { topLogits, topIndex, deltas, cell: this.cells[li] },
        candidates,
      );
      rec.release(topLogits, topIndex, deltas);
      offset += k;
    });

    // One sort of every level's survivors, then NMS within each level, best post_nms_top_n kept.
    const order = rec.tensor('rpn.order', [total]);
    const orderCount = rec.tensor('rpn.order_count', [1]);
    rec.keep(new SortDescending(ctx, total, 'rpn.sort')).record(rec, { keys: candidates.keys, valid: candidates.valid, outValues: order, outCount: orderCount });
    rec.release(candidates.keys, candidates.valid);

    const maxProposals = Math.min(o.rpnPostNmsTopN, total);
    const kept = rec.tensor('rpn.kept', [maxProposals]);
    const count = rec.tensor('rpn.proposal_count', [1]);
    const nms = new GreedyNms(ctx, { iouThreshold: o.rpnNmsThresh, maxKeep: maxProposals, coordinateTrickMaxCount: o.nmsCoordinateTrickMax }, 'rpn.nms');
    nms.record(rec, { boxes: candidates.boxes, groups: candidates.group, order, count: orderCount, keep: kept, keepCount: count }, total);
    rec.release(order, orderCount, candidates.group);
    const boxes = recordGatherBoxes(rec, maxProposals, { candBoxes: candidates.boxes, kept, keptCount: count }, 'rpn.proposals');
    rec.release(candidates.boxes, kept);
    return { boxes, count };
  }

  destroy(): void {
    for (const c of [this.conv, this.cls, this.bbox]) c.destroy();
    for (const t of this.cells) this.ctx.release(t.buffer);
  }
}
