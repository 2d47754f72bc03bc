// Region proposal network (torchvision RegionProposalNetwork, eval), entirely on the GPU:
// shared head on the five FPN levels, per-level top-k on the objectness logits, decode against
// the anchors, clip, small-box removal, then one sort of all candidates and a greedy NMS that
// only compares boxes of the same level (= batched_nms by level) keeping the best post_nms_top_n.

import type { GpuContext } from '../gpu.ts';
import type { Dispatch } from '../kernels/dispatch.ts';
import type { Conv2d, ConvPrecision } from '../kernels/conv2d.ts';
import { planGatherBoxes } from '../kernels/gatherBoxes.ts';
import { GreedyNms } from '../kernels/nms.ts';
import type { ResizePlan } from '../kernels/preprocess.ts';
import { planRpnDecode } from '../kernels/rpnDecode.ts';
import { planRpnScores } from '../kernels/rpnScores.ts';
import { SortDescending, TopK } from '../kernels/sort.ts';
import type { BufferPool, Tensor } from '../planner.ts';
import type { MaskRCNNWeights } from '../../weights-loader/maskrcnn.ts';
import { cellAnchors, DEFAULT_ANCHOR_SIZES, DEFAULT_ASPECT_RATIOS, levelStrides } from './anchors.ts';
import { makeConv, type FeatureMap } from './backbone.ts';
import type { ResolvedOptions } from './options.ts';

/** GPU objects that live as long as one planned input size. */
export interface Destroyable {
  destroy(): void;
}

export interface Proposals {
  /** [maxProposals][4] boxes (x1, y1, x2, y2) in resized-image coordinates, best first. */
  boxes: Tensor;
  /** u32[1]: how many of them are real. */
  count: Tensor;
  maxProposals: number;
}

export class Rpn {
  private readonly conv: Conv2d;
  private readonly cls: Conv2d;
  private readonly bbox: Conv2d;
  private readonly anchors: number;
  private readonly cells: GPUBuffer[];

  constructor(
    private readonly ctx: GpuContext,
    w: MaskRCNNWeights['rpn'],
    precision: ConvPrecision = 'f32',
  ) {
    this.conv = makeConv(ctx, w.conv, 'rpn.head.conv', { relu: true, precision });
    this.cls = makeConv(ctx, w.cls, 'rpn.head.cls_logits', { precision });
    this.bbox = makeConv(ctx, w.bbox, 'rpn.head.bbox_pred', { precision });
    this.anchors = w.numAnchors;
    if (this.anchors !== DEFAULT_ASPECT_RATIOS.length) {
      throw new Error(`rpn.head.cls_logits has ${this.anchors} anchors per location; torchvision's generator has ${DEFAULT_ASPECT_RATIOS.length} (ratios 0.5, 1, 2)`);
    }
    this.cells = DEFAULT_ANCHOR_SIZES.map((s, i) => ctx.upload(`rpn.cell_anchors.${i}`, cellAnchors(s, DEFAULT_ASPECT_RATIOS)));
  }

  plan(pool: BufferPool, levels: FeatureMap[], resize: ResizePlan, o: ResolvedOptions, out: Dispatch[], keep: Destroyable[]): Proposals {
    const ctx = this.ctx;
    const A = this.anchors;
    if (levels.length !== this.cells.length) throw new Error(`RPN expects ${this.cells.length} feature levels, got ${levels.length}`);
    const strides = levelStrides(resize.paddedH, resize.paddedW, levels);
    const ks = levels.map((l) => Math.min(o.rpnPreNmsTopN, l.h * l.w * A));
    const total = ks.reduce((a, b) => a + b, 0);
    const candBoxes = pool.tensor('rpn.cand_boxes', [total, 4]);
    const candKeys = pool.tensor('rpn.cand_keys', [total]);
    const candGroup = pool.tensor('rpn.cand_group', [total]);
    const candValid = pool.tensor('rpn.cand_valid', [total]);

    let offset = 0;
    levels.forEach((level, li) => {
      const shape = { batch: 1, h: level.h, w: level.w };
      const t = pool.tensor(`rpn.t${li}`, [this.conv.spec.cout, level.h, level.w]);
      out.push(this.conv.plan(shape, { input: level.buffer, output: t.buffer }));
      const logits = pool.tensor(`rpn.logits${li}`, [A, level.h, level.w]);
      const deltas = pool.tensor(`rpn.deltas${li}`, [4 * A, level.h, level.w]);
      out.push(this.cls.plan(shape, { input: t.buffer, output: logits.buffer }));
      out.push(this.bbox.plan(shape, { input: t.buffer, output: deltas.buffer }));
      pool.release(t);

      const n = level.h * level.w * A;
      const scores = pool.tensor(`rpn.scores${li}`, [n]);
      out.push(planRpnScores(ctx, { anchors: A, h: level.h, w: level.w }, { logits: logits.buffer, scores: scores.buffer }));
      pool.release(logits);
      const k = ks[li];
      const topLogits = pool.tensor(`rpn.top_logits${li}`, [k]);
      const topIndex = pool.tensor(`rpn.top_index${li}`, [k]);
      const topk = new TopK(ctx, n, k, `rpn.topk${li}`);
      keep.push(topk);
      out.push(...topk.plan({ keys: scores.buffer, outKeys: topLogits.buffer, outValues: topIndex.buffer }));
      pool.release(scores);
      out.push(
        planRpnDecode(
          ctx,
          {
            k,
            offset,
            level: li,
            anchors: A,
            h: level.h,
            w: level.w,
            strideH: strides[li].h,
            strideW: strides[li].w,
            imageH: resize.outH,
            imageW: resize.outW,
            minSize: o.rpnMinSize,
            scoreThresh: o.rpnScoreThresh,
          },
          {
            topLogits: topLogits.buffer,
            topIndex: topIndex.buffer,
            deltas: deltas.buffer,
            cell: this.cells[li],
            candBoxes: candBoxes.buffer,
            candKeys: candKeys.buffer,
            candGroup: candGroup.buffer,
            candValid: candValid.buffer,
          },
        ),
      );
      pool.release(topLogits, topIndex, deltas);
      offset += k;
    });

    // One sort of every level's survivors, then NMS within each level, best post_nms_top_n kept.
    const order = pool.tensor('rpn.order', [total]);
    const orderCount = pool.tensor('rpn.order_count', [1]);
    const sort = new SortDescending(ctx, total, 'rpn.sort');
    keep.push(sort);
    out.push(...sort.plan({ keys: candKeys.buffer, valid: candValid.buffer, outValues: order.buffer, outCount: orderCount.buffer }));
    pool.release(candKeys, candValid);

    const maxProposals = Math.min(o.rpnPostNmsTopN, total);
    const kept = pool.tensor('rpn.kept', [maxProposals]);
    const count = pool.tensor('rpn.proposal_count', [1]);
    const nms = new GreedyNms(ctx, { iouThreshold: o.rpnNmsThresh, maxKeep: maxProposals, coordinateTrickMaxCount: o.nmsCoordinateTrickMax }, 'rpn.nms');
    keep.push(nms);
    out.push(
      nms.plan({ boxes: candBoxes.buffer, groups: candGroup.buffer, order: order.buffer, count: orderCount.buffer, keep: kept.buffer, keepCount: count.buffer }, total),
    );
    pool.release(order, orderCount, candGroup);
    const boxes = pool.tensor('rpn.proposals', [maxProposals, 4]);
    out.push(planGatherBoxes(ctx, maxProposals, { candBoxes: candBoxes.buffer, kept: kept.buffer, keptCount: count.buffer, boxes: boxes.buffer }));
    pool.release(candBoxes, kept);
    return { boxes, count, maxProposals };
  }

  macs(levels: Array<{ h: number; w: number }>): number {
    return levels.reduce((s, l) => s + [this.conv, this.cls, this.bbox].reduce((a, c) => a + c.macs({ batch: 1, h: l.h, w: l.w }), 0), 0);
  }

  destroy(): void {
    for (const c of [this.conv, this.cls, this.bbox]) c.destroy();
    for (const b of this.cells) this.ctx.release(b);
  }
}
