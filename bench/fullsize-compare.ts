// Stage dump for tools/compare_fullsize.py --stages: runs maskgpu's preprocess, backbone + FPN and
// RPN on one image exactly as the model's plan records them (ResNetFpn.recordBody / recordFpn,
// Rpn.record, with the tuned conv tiles when cached, like the CLI), then the box head (MultiScaleRoIAlign
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
import { Linear } from '../engine/kernels/linear.ts';
import { normalizationTable, recordPreprocess, resizePlan } from '../engine/kernels/preprocess.ts';
import { RoiAlignMultiLevel } from '../engine/kernels/roiAlign.ts';
import { ResNetFpn } from '../engine/maskrcnn/backbone.ts';
import { resolveOptions } from '../engine/maskrcnn/options.ts';
import { Rpn } from '../engine/maskrcnn/rpn.ts';
import { convFromParams } from '../engine/maskrcnn/layers.ts';
import { cellAnchors, DEFAULT_ANCHOR_SIZES, DEFAULT_ASPECT_RATIOS, levelStrides } from '../engine/maskrcnn/anchors.ts';
import { GreedyNms } from '../engine/kernels/nms.ts';
import { candidateTensors, recordRpnDecode } from '../engine/kernels/rpnDecode.ts';
import { recordRpnScores } from '../engine/kernels/rpnScores.ts';
import { SortDescending } from '../engine/kernels/sort.ts';
import { TopK } from '../engine/kernels/sortTopk.ts';
import { Recorder } from '../engine/recorder.ts';
import { loadMaskRCNNWeights, maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors, serializeSafetensors, type Tensor } from '../weights-loader/safetensors.ts';
import { readSafetensorsFile } from '../weights-loader/node.ts';
import { readImageFile } from '../io/image.ts';
import { parseScriptArgs } from '../io/args.ts';
import { useCachedConvTiling } from '../io/tiles.ts';

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
ctx.setKernelTiers('tuned'); // the tuned kernels, as a warm CLI run uses them (bench:coldstart measures the tiers)
const tiles = useCachedConvTiling(ctx);
console.log(`adapter: ${describeAdapter(ctx.report)}; conv tiles ${tiles ? `tuned (${tiles})` : 'built-in defaults'}`);
const o = resolveOptions({}, weights.meta);
const plan = resizePlan(image.height, image.width, o.minSize, o.maxSize);
// Nothing below is released to the pool, so every tensor read back afterwards still holds its value.
const rec = new Recorder(ctx, 'fullsize stages');
const backbone = new ResNetFpn(ctx, weights);
const rpn = new Rpn(ctx, weights.rpn);

const table = rec.input('normalization', normalizationTable(weights.meta.imageMean, weights.meta.imageStd), [3, 256]);
const { image: imageInput, output: input } = recordPreprocess(rec, plan, table);
imageInput.write(image.data, image.data.length === image.width * image.height * 3 ? 3 : 4);
const levels = backbone.recordFpn(rec, backbone.recordBody(rec, input));
const proposals = rpn.record(rec, levels, plan, o);

// Box head on torchvision's proposals (the levels stay live: nothing above released them).
const K = tvProposals.shape[0];
const C = weights.meta.numClasses;
const fpnChannels = weights.fpn.layer[0].cout;
const tvBoxes = rec.input('tv proposals', tvProposals.data as Float32Array, [K, 4]);
const tvCount = rec.input('tv proposal count', new Uint32Array([K]), [1]);
const align = new RoiAlignMultiLevel(ctx, { channels: fpnChannels, outputSize: 7, samplingRatio: 2, maxRois: K }, 'box_roi_pool');
const pooled = align.record(rec, { features: levels.slice(0, 4), boxes: tvBoxes, count: tvCount, imageHeight: plan.outH });
const lin = (p: typeof weights.boxHead.fc6, relu: boolean, label: string) => new Linear(ctx, p.inFeatures, p.outFeatures, p.weight, p.bias, relu, label);
const heads = [lin(weights.boxHead.fc6, true, 'fc6'), lin(weights.boxHead.fc7, true, 'fc7'), lin(weights.boxPredictor.cls, false, 'cls_score'), lin(weights.boxPredictor.bbox, false, 'bbox_pred')];
const fc6 = heads[0].record(rec, pooled);
const fc7 = heads[1].record(rec, fc6);
const logits = heads[2].record(rec, fc7);
const deltas = heads[3].record(rec, fc7);

// RPN step by step, as Rpn.record records it, but nothing released so every step can be read.
const A = weights.rpn.numAnchors;
const rpnConv = rec.keep(convFromParams(ctx, weights.rpn.conv, 'rpn.conv', { relu: true }));
const rpnCls = rec.keep(convFromParams(ctx, weights.rpn.cls, 'rpn.cls'));
const rpnBbox = rec.keep(convFromParams(ctx, weights.rpn.bbox, 'rpn.bbox'));
const sizes = levels.map((l) => ({ h: l.shape[1], w: l.shape[2] }));
const strides = levelStrides(plan.paddedH, plan.paddedW, sizes);
const ks = sizes.map((l) => Math.min(o.rpnPreNmsTopN, l.h * l.w * A));
const total = ks.reduce((a, b) => a + b, 0);
const cand = candidateTensors(rec, 'cand', total);
const rpnReads: Array<[string, GPUBuffer, number[], 'f32' | 'u32']> = [];
let offset = 0;
for (const [li, level] of levels.entries()) {
  const { h, w } = sizes[li];
  const t = rpnConv.record(rec, level);
  const logitsL = rpnCls.record(rec, t);
  const deltasL = rpnBbox.record(rec, t);
  const n = h * w * A;
  const scores = recordRpnScores(rec, logitsL, `rpn.scores${li}`);
  const topLogits = rec.tensor(`rpn.top_logits${li}`, [ks[li]]);
  const topIndex = rec.tensor(`rpn.top_index${li}`, [ks[li]]);
  rec.keep(new TopK(ctx, n, ks[li], `rpn.topk${li}`)).record(rec, { keys: scores, outKeys: topLogits, outValues: topIndex });
  const cell = rec.input(`cell${li}`, cellAnchors(DEFAULT_ANCHOR_SIZES[li], DEFAULT_ASPECT_RATIOS), [A, 4]);
  recordRpnDecode(
    rec,
    { k: ks[li], offset, level: li, anchors: A, h, w, strideH: strides[li].h, strideW: strides[li].w, imageH: plan.outH, imageW: plan.outW, minSize: o.rpnMinSize, scoreThresh: o.rpnScoreThresh },
    { topLogits, topIndex, deltas: deltasL, cell },
    cand,
  );
  rpnReads.push([`rpn.scores${li}`, scores.buffer, [n], 'f32'], [`rpn.top_logits${li}`, topLogits.buffer, [ks[li]], 'f32'], [`rpn.top_index${li}`, topIndex.buffer, [ks[li]], 'u32']);
  offset += ks[li];
}
const order = rec.tensor('rpn.order', [total]);
const orderCount = rec.tensor('rpn.order_count', [1]);
const maxKeep = Math.min(o.rpnPostNmsTopN, total);
const kept = rec.tensor('rpn.kept', [maxKeep]);
const keptCount = rec.tensor('rpn.kept_count', [1]);
rec.keep(new SortDescending(ctx, total, 'rpn.sort')).record(rec, { keys: cand.keys, valid: cand.valid, outValues: order, outCount: orderCount });
new GreedyNms(ctx, { iouThreshold: o.rpnNmsThresh, maxKeep, coordinateTrickMaxCount: o.nmsCoordinateTrickMax }, 'rpn.nms').record(
  rec,
  { boxes: cand.boxes, groups: cand.group, order, count: orderCount, keep: kept, keepCount: keptCount },
  total,
);
rpnReads.push(['rpn.cand_boxes', cand.boxes.buffer, [total, 4], 'f32'], ['rpn.cand_keys', cand.keys.buffer, [total], 'f32'], ['rpn.cand_valid', cand.valid.buffer, [total], 'u32']);
rpnReads.push(['rpn.order', order.buffer, [total], 'u32'], ['rpn.order_count', orderCount.buffer, [1], 'u32'], ['rpn.kept', kept.buffer, [maxKeep], 'u32'], ['rpn.kept_count', keptCount.buffer, [1], 'u32']);

await ctx.checked('fullsize stage run', () => rec.submit());
const out = new Map<string, Tensor>();
const read = async (name: string, buffer: GPUBuffer, shape: number[]) => {
  const n = shape.reduce((a, b) => a * b, 1);
  out.set(name, { dtype: 'F32', shape, data: await ctx.readF32(buffer, n) } as Tensor);
};
await read('input', input.buffer, [1, 3, plan.paddedH, plan.paddedW]);
for (const [i, l] of levels.entries()) await read(i < 4 ? `fpn.${i}` : 'fpn.pool', l.buffer, [1, ...l.shape]);
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

for (const d of [rec, ...heads, backbone, rpn]) d.destroy();
ctx.device.destroy();
