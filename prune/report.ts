// Counting for the pruning report: parameters (conv/linear weights and biases, stored and
// non-zero), FrozenBN values, and multiply-accumulates of every conv/linear layer at an input
// size, from the tensor shapes alone. MACs per layer = (times each weight is used) x (weights):
// a conv uses each weight once per output pixel, a linear once per RoI, the 2x2 stride-2
// transposed conv once per input pixel. RoI heads are counted for a fixed number of boxes
// (torchvision's defaults: 1000 proposals into the box head, up to 100 detections into the mask
// head).

import { convOutputSize } from '../engine/kernels/conv2d.ts';
import { RESNET50_BLOCKS } from '../weights-loader/maskrcnn.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';
import type { Layer, PruneGraph } from './graph.ts';

export type ModelPart = 'backbone' | 'rpn' | 'boxHead' | 'maskHead';
export type PartCounts = Record<ModelPart | 'total', number>;

export interface CountSettings {
  /** Padded network input [H, W] (multiples of 32). */
  inputSize: [number, number];
  rois: number;
  detections: number;
}

/** The default input: a 3:2 landscape image at the model's min_size, padded to /32 (800 -> 800x1216). */
export function defaultInputSize(minSize: number, maxSize: number): [number, number] {
  const pad = (x: number) => Math.ceil(x / 32) * 32;
  return [pad(minSize), pad(Math.min(maxSize, Math.floor(minSize * 1.5)))];
}

export function layerPart(name: string): ModelPart {
  if (name.startsWith('backbone.')) return 'backbone';
  if (name.startsWith('rpn.')) return 'rpn';
  if (name.startsWith('roi_heads.box_')) return 'boxHead';
  return 'maskHead';
}

/** How many times each weight of each layer is used for one image. */
export function weightUses(graph: PruneGraph, s: CountSettings): Map<string, number> {
  const uses = new Map<string, number>();
  const [h, w] = s.inputSize;
  const out = (x: { h: number; w: number }, k: number, stride: number, pad: number) => ({
    h: convOutputSize(x.h, k, stride, pad, 1),
    w: convOutputSize(x.w, k, stride, pad, 1),
  });
  const body = 'backbone.body';
  let x = out({ h, w }, 7, 2, 3);
  uses.set(`${body}.conv1`, x.h * x.w);
  x = out(x, 3, 2, 1); // maxpool
  const stages: Array<{ h: number; w: number }> = [];
  RESNET50_BLOCKS.forEach((n, l) => {
    for (let b = 0; b < n; b++) {
      const p = `${body}.layer${l + 1}.${b}`;
      const stride = b === 0 && l > 0 ? 2 : 1;
      const y = out(x, 3, stride, 1);
      uses.set(`${p}.conv1`, x.h * x.w);
      for (const c of ['conv2', 'conv3', 'downsample.0']) uses.set(`${p}.${c}`, y.h * y.w);
      x = y;
    }
    stages.push(x);
  });
  stages.forEach((st, i) => {
    uses.set(`backbone.fpn.inner_blocks.${i}.0`, st.h * st.w);
    uses.set(`backbone.fpn.layer_blocks.${i}.0`, st.h * st.w);
  });
  const p6 = out(stages[3], 1, 2, 0);
  const rpnPositions = [...stages, p6].reduce((a, st) => a + st.h * st.w, 0);
  for (const n of ['rpn.head.conv.0.0', 'rpn.head.cls_logits', 'rpn.head.bbox_pred']) uses.set(n, rpnPositions);
  for (const n of ['roi_heads.box_head.fc6', 'roi_heads.box_head.fc7', 'roi_heads.box_predictor.cls_score', 'roi_heads.box_predictor.bbox_pred']) uses.set(n, s.rois);
  for (let k = 0; k < 4; k++) uses.set(`roi_heads.mask_head.${k}.0`, 14 * 14 * s.detections);
  uses.set('roi_heads.mask_predictor.conv5_mask', 14 * 14 * s.detections);
  uses.set('roi_heads.mask_predictor.mask_fcn_logits', 28 * 28 * s.detections);
  for (const name of graph.order) if (!uses.has(name)) throw new Error(`prune report: no spatial size for layer '${name}'`);
  return uses;
}

export interface LayerCounts {
  weights: number;
  nonzeroWeights: number;
  /** Weights + biases (conv/linear parameters). */
  params: number;
  nonzeroParams: number;
  cout: number;
  cin: number;
}

const nonzero = (a: Float32Array) => a.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);

export function layerCounts(layer: Layer, tensors: Map<string, Tensor>): LayerCounts {
  const w = tensors.get(layer.weightKey)!;
  const b = layer.biasKey ? tensors.get(layer.biasKey)!.data : new Float32Array(0);
  const s = w.shape;
  const [cout, cin] = layer.kind === 'deconv' ? [s[1], s[0]] : [s[0], layer.kind === 'linear' ? s[1] / layer.kernel : s[1]];
  const nzw = nonzero(w.data);
  return { weights: w.data.length, nonzeroWeights: nzw, params: w.data.length + b.length, nonzeroParams: nzw + nonzero(b), cout, cin };
}

export interface ModelCounts {
  params: number;
  nonzeroParams: number;
  bnValues: number;
  macs: PartCounts;
  /** MACs counting only non-zero weights (what a sparse kernel would need). */
  effectiveMacs: PartCounts;
  layers: Map<string, LayerCounts & { macs: number }>;
}

export function countModel(graph: PruneGraph, tensors: Map<string, Tensor>, s: CountSettings): ModelCounts {
  const uses = weightUses(graph, s);
  const zero = (): PartCounts => ({ backbone: 0, rpn: 0, boxHead: 0, maskHead: 0, total: 0 });
  const macs = zero();
  const effectiveMacs = zero();
  const layers = new Map<string, LayerCounts & { macs: number }>();
  let params = 0;
  let nonzeroParams = 0;
  let bnValues = 0;
  for (const name of graph.order) {
    const l = graph.layers.get(name)!;
    const c = layerCounts(l, tensors);
    const u = uses.get(name)!;
    const part = layerPart(name);
    macs[part] += u * c.weights;
    effectiveMacs[part] += u * c.nonzeroWeights;
    params += c.params;
    nonzeroParams += c.nonzeroParams;
    if (l.bnPrefix) bnValues += 4 * c.cout;
    layers.set(name, { ...c, macs: u * c.weights });
  }
  macs.total = macs.backbone + macs.rpn + macs.boxHead + macs.maskHead;
  effectiveMacs.total = effectiveMacs.backbone + effectiveMacs.rpn + effectiveMacs.boxHead + effectiveMacs.maskHead;
  return { params, nonzeroParams, bnValues, macs, effectiveMacs, layers };
}

export const giga = (p: PartCounts): PartCounts =>
  Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Math.round(v / 1e6) / 1e3])) as PartCounts;
