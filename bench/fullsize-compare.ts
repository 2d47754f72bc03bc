// Stage dump for tools/compare_fullsize.py --stages: runs maskgpu's preprocess, backbone + FPN and
// RPN on one image exactly as MaskRCNN.planFor records them, then the box head (MultiScaleRoIAlign
// 7x7 -> fc6 -> fc7 -> cls_score / bbox_pred) on *torchvision's* proposals, so each stage can be
// compared with torchvision in isolation (a proposal difference does not hide a box-head one).
// The RPN is also replayed step by step in its own buffers (head logits, per-level top-k, decoded
// candidates, sort order, NMS keep list), to find which step of the RPN differs.
// Writes one F32 safetensors file (indices as exact floats); the Python side does the comparing.
//
//   node --import ./tools/register.mjs bench/fullsize-compare.ts --weights W --image IMG \
//       --proposals torchvision.safetensors --out stages.safetensors

import { readFileSync, writeFileSync } from 'node:fs';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { type Dispatch, submitDispatches } from '../engine/kernels/dispatch.ts';
import { Linear } from '../engine/kernels/linear.ts';
import { normalizationTable, packRgb, planPreprocess, resizePlan } from '../engine/kernels/preprocess.ts';
import { RoiAlignMultiLevel } from '../engine/kernels/roiAlign.ts';
import { ResNetFpn } from '../engine/maskrcnn/backbone.ts';
import { resolveOptions } from '../engine/maskrcnn/options.ts';
import { Rpn, type Destroyable } from '../engine/maskrcnn/rpn.ts';
import { makeConv } from '../engine/maskrcnn/backbone.ts';
import { cellAnchors, DEFAULT_ANCHOR_SIZES, DEFAULT_ASPECT_RATIOS, levelStrides } from '../engine/maskrcnn/anchors.ts';
import { GreedyNms } from '../engine/kernels/nms.ts';
import { planRpnDecode } from '../engine/kernels/rpnDecode.ts';
import { planRpnScores } from '../engine/kernels/rpnScores.ts';
import { SortDescending, TopK } from '../engine/kernels/sort.ts';
import { BufferPool } from '../engine/planner.ts';
import { loadMaskRCNNWeights, maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors, serializeSafetensors, type Tensor } from '../weights-loader/safetensors.ts';
import { readSafetensorsFile } from '../weights-loader/node.ts';
import { readImageFile } from '../io/image.ts';
import { parseScriptArgs } from '../io/args.ts';

const { values: opt } = parseScriptArgs({
  command: 'bench/fullsize-compare.ts',
  usage: `usage: node --import ./tools/register.mjs bench/fullsize-compare.ts --weights W --image IMG \\
       --proposals torchvision.safetensors --out stages.safetensors   (tools/compare_fullsize.py --stages runs it)`,
  options: {
    weights: { type: 'string', required: true },
    image: { type: 'string', required: true },
    proposals: { type: 'string', required: true },
    out: { type: 'string', required: true },
  },
});

const t0 = performance.now();
const weights = loadMaskRCNNWeights(await readSafetensorsFile(opt.weights, maskrcnnParseOptions));
const image = await readImageFile(opt.image);
const tvProposals = parseSafetensors(new Uint8Array(readFileSync(opt.proposals))).tensors.get('proposals');
if (!tvProposals || tvProposals.shape.length !== 2 || tvProposals.shape[1] !== 4) {
  throw new Error(`${opt.proposals} has no [P, 4] 'proposals' tensor; make it with tools/compare_fullsize.py`);
}

const ctx = await GpuContext.create();
console.log(`adapter: ${describeAdapter(ctx.report)}`);
const o = resolveOptions({}, weights.meta);
const plan = resizePlan(image.height, image.width, o.minSize, o.maxSize);
const pool = new BufferPool(ctx);
const dispatches: Dispatch[] = [];
const keep: Destroyable[] = [];
const backbone = new ResNetFpn(ctx, weights);
const rpn = new Rpn(ctx, weights.rpn);

const rgb = ctx.upload('rgb', packRgb(image.data as Uint8Array));
const table = ctx.upload('normalization', normalizationTable(weights.meta.imageMean, weights.meta.imageStd));
const input = pool.tensor('input', [3, plan.paddedH, plan.paddedW]);
dispatches.push(planPreprocess(ctx, plan, { rgb, table, output: input.buffer }));
const { levels } = backbone.plan(pool, { ...input, c: 3, h: plan.paddedH, w: plan.paddedW }, dispatches);
const proposals = rpn.plan(pool, levels, plan, o, dispatches, keep);

// Box head on torchvision's proposals (the levels stay live: nothing above released them).
const K = tvProposals.shape[0];
const C = weights.meta.numClasses;
const fpnChannels = weights.fpn.layer[0].cout;
const tvBoxes = ctx.upload('tv proposals', tvProposals.data as Float32Array);
const tvCount = ctx.upload('tv proposal count', new Uint32Array([K]));
const align = new RoiAlignMultiLevel(ctx, { channels: fpnChannels, outputSize: 7, samplingRatio: 2, maxRois: K }, 'box_roi_pool');
const pooled = pool.tensor('box_roi_pool', [K, fpnChannels, 7, 7]);
dispatches.push(...align.plan({ features: levels.slice(0, 4).map((l) => l.buffer), boxes: tvBoxes, count: tvCount, output: pooled.buffer }, { levels: levels.slice(0, 4).map((l) => ({ h: l.h, w: l.w })), imageHeight: plan.outH }));
const lin = (p: typeof weights.boxHead.fc6, relu: boolean, label: string) => new Linear(ctx, p.inFeatures, p.outFeatures, p.weight, p.bias, relu, label);
const heads = [lin(weights.boxHead.fc6, true, 'fc6'), lin(weights.boxHead.fc7, true, 'fc7'), lin(weights.boxPredictor.cls, false, 'cls_score'), lin(weights.boxPredictor.bbox, false, 'bbox_pred')];
const fc6 = pool.tensor('fc6', [K, heads[0].outFeatures]);
const fc7 = pool.tensor('fc7', [K, heads[1].outFeatures]);
const logits = pool.tensor('class_logits', [K, C]);
const deltas = pool.tensor('box_regression', [K, 4 * C]);
dispatches.push(heads[0].plan(K, { input: pooled.buffer, output: fc6.buffer }));
dispatches.push(heads[1].plan(K, { input: fc6.buffer, output: fc7.buffer }));
dispatches.push(heads[2].plan(K, { input: fc7.buffer, output: logits.buffer }));
dispatches.push(heads[3].plan(K, { input: fc7.buffer, output: deltas.buffer }));

// RPN step by step, as Rpn.plan records it, but nothing released so every step can be read.
const A = weights.rpn.numAnchors;
const rpnConv = makeConv(ctx, weights.rpn.conv, 'rpn.conv', { relu: true });
const rpnCls = makeConv(ctx, weights.rpn.cls, 'rpn.cls');
const rpnBbox = makeConv(ctx, weights.rpn.bbox, 'rpn.bbox');
const strides = levelStrides(plan.paddedH, plan.paddedW, levels);
const ks = levels.map((l) => Math.min(o.rpnPreNmsTopN, l.h * l.w * A));
const total = ks.reduce((a, b) => a + b, 0);
const cand = { boxes: pool.tensor('cand_boxes', [total, 4]), keys: pool.tensor('cand_keys', [total]), group: pool.tensor('cand_group', [total]), valid: pool.tensor('cand_valid', [total]) };
const rpnReads: Array<[string, GPUBuffer, number[], 'f32' | 'u32']> = [];
let offset = 0;
for (const [li, level] of levels.entries()) {
  const shape = { batch: 1, h: level.h, w: level.w };
  const t = pool.tensor(`rpn.t${li}`, [weights.rpn.conv.cout, level.h, level.w]);
  const logitsL = pool.tensor(`rpn.logits${li}`, [A, level.h, level.w]);
  const deltasL = pool.tensor(`rpn.deltas${li}`, [4 * A, level.h, level.w]);
  dispatches.push(rpnConv.plan(shape, { input: level.buffer, output: t.buffer }), rpnCls.plan(shape, { input: t.buffer, output: logitsL.buffer }), rpnBbox.plan(shape, { input: t.buffer, output: deltasL.buffer }));
  const n = level.h * level.w * A;
  const scores = pool.tensor(`rpn.scores${li}`, [n]);
  dispatches.push(planRpnScores(ctx, { anchors: A, h: level.h, w: level.w }, { logits: logitsL.buffer, scores: scores.buffer }));
  const topLogits = pool.tensor(`rpn.top_logits${li}`, [ks[li]]);
  const topIndex = pool.tensor(`rpn.top_index${li}`, [ks[li]]);
  const topk = new TopK(ctx, n, ks[li], `rpn.topk${li}`);
  keep.push(topk);
  dispatches.push(...topk.plan({ keys: scores.buffer, outKeys: topLogits.buffer, outValues: topIndex.buffer }));
  const cell = ctx.upload(`cell${li}`, cellAnchors(DEFAULT_ANCHOR_SIZES[li], DEFAULT_ASPECT_RATIOS));
  dispatches.push(
    planRpnDecode(
      ctx,
      { k: ks[li], offset, level: li, anchors: A, h: level.h, w: level.w, strideH: strides[li].h, strideW: strides[li].w, imageH: plan.outH, imageW: plan.outW, minSize: o.rpnMinSize, scoreThresh: o.rpnScoreThresh },
      { topLogits: topLogits.buffer, topIndex: topIndex.buffer, deltas: deltasL.buffer, cell, candBoxes: cand.boxes.buffer, candKeys: cand.keys.buffer, candGroup: cand.group.buffer, candValid: cand.valid.buffer },
    ),
  );
  rpnReads.push([`rpn.scores${li}`, scores.buffer, [n], 'f32'], [`rpn.top_logits${li}`, topLogits.buffer, [ks[li]], 'f32'], [`rpn.top_index${li}`, topIndex.buffer, [ks[li]], 'u32']);
  offset += ks[li];
}
const order = pool.tensor('rpn.order', [total]);
const orderCount = pool.tensor('rpn.order_count', [1]);
const sort = new SortDescending(ctx, total, 'rpn.sort');
const rpnNms = new GreedyNms(ctx, { iouThreshold: o.rpnNmsThresh, maxKeep: Math.min(o.rpnPostNmsTopN, total), coordinateTrickMaxCount: o.nmsCoordinateTrickMax }, 'rpn.nms');
const kept = pool.tensor('rpn.kept', [Math.min(o.rpnPostNmsTopN, total)]);
const keptCount = pool.tensor('rpn.kept_count', [1]);
keep.push(sort, rpnNms, rpnConv, rpnCls, rpnBbox);
dispatches.push(...sort.plan({ keys: cand.keys.buffer, valid: cand.valid.buffer, outValues: order.buffer, outCount: orderCount.buffer }));
dispatches.push(rpnNms.plan({ boxes: cand.boxes.buffer, groups: cand.group.buffer, order: order.buffer, count: orderCount.buffer, keep: kept.buffer, keepCount: keptCount.buffer }, total));
rpnReads.push(['rpn.cand_boxes', cand.boxes.buffer, [total, 4], 'f32'], ['rpn.cand_keys', cand.keys.buffer, [total], 'f32'], ['rpn.cand_valid', cand.valid.buffer, [total], 'u32']);
rpnReads.push(['rpn.order', order.buffer, [total], 'u32'], ['rpn.order_count', orderCount.buffer, [1], 'u32'], ['rpn.kept', kept.buffer, [Math.min(o.rpnPostNmsTopN, total)], 'u32'], ['rpn.kept_count', keptCount.buffer, [1], 'u32']);

await ctx.checked('fullsize stage run', () => submitDispatches(ctx, dispatches));
const out = new Map<string, Tensor>();
const read = async (name: string, buffer: GPUBuffer, shape: number[]) => {
  const n = shape.reduce((a, b) => a * b, 1);
  out.set(name, { dtype: 'F32', shape, data: await ctx.readF32(buffer, n) } as Tensor);
};
await read('input', input.buffer, [1, 3, plan.paddedH, plan.paddedW]);
for (const [i, l] of levels.entries()) await read(i < 4 ? `fpn.${i}` : 'fpn.pool', l.buffer, [1, l.c, l.h, l.w]);
const count = (await ctx.readU32(proposals.count.buffer, 1))[0];
await read('proposals', proposals.boxes.buffer, [count, 4]);
await read('tv_fc6', fc6.buffer, [K, heads[0].outFeatures]);
await read('tv_fc7', fc7.buffer, [K, heads[1].outFeatures]);
await read('tv_class_logits', logits.buffer, [K, C]);
await read('tv_box_regression', deltas.buffer, [K, 4 * C]);
for (const [name, buffer, shape, type] of rpnReads) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = type === 'f32' ? await ctx.readF32(buffer, n) : Float32Array.from(await ctx.readU32(buffer, n));
  out.set(name, { dtype: 'F32', shape, data });
}
writeFileSync(opt.out, serializeSafetensors(out, { format: 'maskgpu-stages-v1' }));
console.log(`stages: ${count} proposals; box head on ${K} torchvision proposals; ${((performance.now() - t0) / 1e3).toFixed(1)} s -> ${opt.out}`);

for (const d of [...dispatches, ...keep, ...heads, backbone, rpn, pool]) d.destroy();
ctx.device.destroy();
