// The channel-dependency graph of torchvision maskrcnn_resnet50_fpn (v1), read from a raw state
// dict (canonical key names, BN tensors unfolded): every conv/linear layer with its shapes, and
// the channel groups whose channels must be removed together for the network to stay valid.
// Module structure: torchvision resnet.Bottleneck (v1.5), ops.FeaturePyramidNetwork with
// LastLevelMaxPool, RPNHead, TwoMLPHead, MaskRCNNHeads, MaskRCNNPredictor (reference doc).
//
// Groups and what a removed channel carries (the masked network, where its filters are zero):
// - free, followed by ReLU (stem, bottleneck conv1/conv2, RPN conv, fc6, fc7, mask head convs,
//   conv5_mask): the constant relu(b_eff), b_eff = the BN-folded (or own) bias;
// - a ResNet stage's output channels (every block's conv3, the downsample, the next stage's
//   inputs, the FPN lateral input), coupled by the residual adds: a constant chain
//   v_0 = relu(b_ds + b_conv3_0), v_b = relu(b_conv3_b + v_{b-1}), seen by each consumer after
//   its block; all consumers are 1x1 unpadded convs, so the compensation is exact;
// - the FPN lateral channels (inner_blocks outputs, summed top-down): at level i the constant
//   sum_{j >= i} bias_inner_j, seen by layer_blocks[i] only;
// - the FPN output channels (layer_blocks outputs, P6, the RPN conv, fc6's C*7*7 columns, mask
//   head conv 0): no ReLU and a different constant per level, while the consumers are shared by
//   all levels, so no consumer bias can carry it: these channels are zeroed entirely (bias too);
// - mask head conv 3's outputs feed the 2x2 stride-2 transposed conv, where a constant input
//   gives a 2x2-periodic output, not a bias: zeroed entirely too.
// Predictors (RPN cls_logits/bbox_pred, box cls_score/bbox_pred, mask_fcn_logits) are never
// pruned: only their input channels shrink.

import { RESNET50_BLOCKS, WeightsError } from '../weights-loader/maskrcnn.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';

export type LayerKind = 'conv' | 'linear' | 'deconv';

export interface Layer {
  /** Module prefix, e.g. 'backbone.body.layer1.0.conv1'. */
  name: string;
  kind: LayerKind;
  weightKey: string;
  /** The layer's own bias (FPN, RPN, heads); undefined for the bias-free ResNet convs. */
  biasKey?: string;
  /** FrozenBatchNorm2d prefix after a bias-free conv. */
  bnPrefix?: string;
  cout: number;
  /** Input channels (for fc6: FPN channels, each with a 7x7 block of columns). */
  cin: number;
  /** Weights per (output, input channel) pair: kh*kw, 49 for fc6, 1 for the other linears. */
  kernel: number;
  kh: number;
  stride: number;
  padding: number;
  /** The group holding this layer's output channels; undefined for predictors. */
  outGroup?: string;
  /** The group holding its input channels; undefined for the stem (the image). */
  inGroup?: string;
}

/** How the constant that a removed channel carries is computed for one consumer. */
export type ConstantSource =
  | { kind: 'relu'; layer: string }
  | { kind: 'residual'; stage: number; block: number }
  | { kind: 'lateral'; level: number };

export interface ChannelGroup {
  name: string;
  channels: number;
  producers: string[];
  consumers: Array<{ layer: string; constant?: ConstantSource }>;
  /** Coupled across several producers (residual adds, the FPN's shared levels). */
  coupled: boolean;
  /** 'constant': compensated in consumers' biases; 'zero': the filter's bias is zeroed too. */
  removal: 'constant' | 'zero';
}

export interface PruneGraph {
  layers: Map<string, Layer>;
  groups: Map<string, ChannelGroup>;
  /** Layers in state-dict order (producers before consumers). */
  order: string[];
}

/** Builds the graph from canonical tensors (call canonicalizeKeys first). */
export function buildPruneGraph(tensors: Map<string, Tensor>): PruneGraph {
  const layers = new Map<string, Layer>();
  const groups = new Map<string, ChannelGroup>();
  const order: string[] = [];
  const shape = (key: string): number[] => {
    const t = tensors.get(key);
    if (!t) throw new WeightsError(`missing tensor '${key}': not a complete maskrcnn_resnet50_fpn (v1) state dict`, key);
    return t.shape;
  };
  const add = (l: Omit<Layer, 'cout' | 'cin' | 'kernel' | 'kh'> & { fc6?: boolean }): Layer => {
    const s = shape(l.weightKey);
    let cout: number, cin: number, kernel: number, kh: number;
    if (l.kind === 'conv') [cout, cin, kernel, kh] = [s[0], s[1], s[2] * s[3], s[2]];
    else if (l.kind === 'deconv') [cout, cin, kernel, kh] = [s[1], s[0], s[2] * s[3], s[2]];
    else if (l.fc6) {
      if (s[1] % 49 !== 0) throw new WeightsError(`'${l.weightKey}' has ${s[1]} input features, not a multiple of 7*7`, l.weightKey);
      [cout, cin, kernel, kh] = [s[0], s[1] / 49, 49, 7];
    } else [cout, cin, kernel, kh] = [s[0], s[1], 1, 1];
    const { fc6: _, ...rest } = l;
    const layer: Layer = { ...rest, cout, cin, kernel, kh };
    layers.set(layer.name, layer);
    order.push(layer.name);
    return layer;
  };
  const group = (name: string, producers: Layer[], coupled: boolean, removal: ChannelGroup['removal'] = 'constant'): ChannelGroup => {
    const g: ChannelGroup = { name, channels: producers[0].cout, producers: producers.map((p) => p.name), consumers: [], coupled, removal };
    for (const p of producers) {
      if (p.cout !== g.channels) throw new WeightsError(`'${p.weightKey}' has ${p.cout} outputs but '${producers[0].weightKey}' has ${g.channels}: they must match`, p.weightKey);
      p.outGroup = name;
    }
    groups.set(name, g);
    return g;
  };
  const consume = (g: ChannelGroup, l: Layer, constant?: ConstantSource) => {
    if (l.cin !== g.channels) throw new WeightsError(`'${l.weightKey}' takes ${l.cin} input channels but its producer group '${g.name}' has ${g.channels}`, l.weightKey);
    l.inGroup = g.name;
    g.consumers.push({ layer: l.name, constant: g.removal === 'constant' ? constant : undefined });
  };
  const bnConv = (name: string, bn: string, stride: number, padding: number) =>
    add({ name, kind: 'conv', weightKey: `${name}.weight`, bnPrefix: bn, stride, padding });
  const biasConv = (name: string, padding: number) => add({ name, kind: 'conv', weightKey: `${name}.weight`, biasKey: `${name}.bias`, stride: 1, padding });
  const linear = (name: string, fc6 = false) => add({ name, kind: 'linear', weightKey: `${name}.weight`, biasKey: `${name}.bias`, stride: 1, padding: 0, fc6 });

  const body = 'backbone.body';
  const stem = bnConv(`${body}.conv1`, `${body}.bn1`, 2, 3);
  // maxpool of a constant plane is that constant (torch pads max_pool2d with -inf).
  let prevGroup = group(stem.name, [stem], false);
  let prevConst: ConstantSource = { kind: 'relu', layer: stem.name };
  const stageGroups: ChannelGroup[] = [];
  RESNET50_BLOCKS.forEach((n, l) => {
    const blocks: Array<{ conv1: Layer; conv2: Layer; conv3: Layer; ds?: Layer }> = [];
    for (let b = 0; b < n; b++) {
      const p = `${body}.layer${l + 1}.${b}`;
      const stride = b === 0 && l > 0 ? 2 : 1;
      const conv1 = bnConv(`${p}.conv1`, `${p}.bn1`, 1, 0);
      const conv2 = bnConv(`${p}.conv2`, `${p}.bn2`, stride, 1);
      const conv3 = bnConv(`${p}.conv3`, `${p}.bn3`, 1, 0);
      const ds = b === 0 ? bnConv(`${p}.downsample.0`, `${p}.downsample.1`, stride, 0) : undefined;
      blocks.push({ conv1, conv2, conv3, ds });
      consume(group(conv1.name, [conv1], false), conv2, { kind: 'relu', layer: conv1.name });
      consume(group(conv2.name, [conv2], false), conv3, { kind: 'relu', layer: conv2.name });
    }
    const stage = group(`${body}.layer${l + 1}`, [blocks[0].ds!, ...blocks.map((b) => b.conv3)], true);
    stageGroups.push(stage);
    // The stage input: the previous stage's output (or the stem after maxpool).
    consume(prevGroup, blocks[0].conv1, prevConst);
    consume(prevGroup, blocks[0].ds!, prevConst);
    for (let b = 1; b < n; b++) consume(stage, blocks[b].conv1, { kind: 'residual', stage: l, block: b - 1 });
    prevGroup = stage;
    prevConst = { kind: 'residual', stage: l, block: n - 1 };
  });

  const fpn = 'backbone.fpn';
  const inner = [0, 1, 2, 3].map((i) => biasConv(`${fpn}.inner_blocks.${i}.0`, 0));
  const outer = [0, 1, 2, 3].map((i) => biasConv(`${fpn}.layer_blocks.${i}.0`, 1));
  inner.forEach((c, i) => consume(stageGroups[i], c, { kind: 'residual', stage: i, block: RESNET50_BLOCKS[i] - 1 }));
  const lateral = group(`${fpn}.inner_blocks`, inner, true);
  outer.forEach((c, i) => consume(lateral, c, { kind: 'lateral', level: i }));
  const fpnOut = group(`${fpn}.layer_blocks`, outer, true, 'zero');

  const rpnConv = biasConv('rpn.head.conv.0.0', 1);
  consume(fpnOut, rpnConv);
  const rpnHidden = group(rpnConv.name, [rpnConv], false);
  for (const pred of ['rpn.head.cls_logits', 'rpn.head.bbox_pred']) consume(rpnHidden, biasConv(pred, 0), { kind: 'relu', layer: rpnConv.name });

  const fc6 = linear('roi_heads.box_head.fc6', true);
  consume(fpnOut, fc6);
  const fc7 = linear('roi_heads.box_head.fc7');
  consume(group(fc6.name, [fc6], false), fc7, { kind: 'relu', layer: fc6.name });
  const fc7Group = group(fc7.name, [fc7], false);
  for (const pred of ['cls_score', 'bbox_pred']) consume(fc7Group, linear(`roi_heads.box_predictor.${pred}`), { kind: 'relu', layer: fc7.name });

  let maskIn = fpnOut;
  let maskConst: ConstantSource | undefined;
  for (let k = 0; k < 4; k++) {
    const conv = biasConv(`roi_heads.mask_head.${k}.0`, 1);
    consume(maskIn, conv, maskConst);
    maskIn = group(conv.name, [conv], false, k === 3 ? 'zero' : 'constant');
    maskConst = { kind: 'relu', layer: conv.name };
  }
  const deconv = add({
    name: 'roi_heads.mask_predictor.conv5_mask', kind: 'deconv', weightKey: 'roi_heads.mask_predictor.conv5_mask.weight',
    biasKey: 'roi_heads.mask_predictor.conv5_mask.bias', stride: 2, padding: 0,
  });
  consume(maskIn, deconv);
  const logits = biasConv('roi_heads.mask_predictor.mask_fcn_logits', 0);
  consume(group(deconv.name, [deconv], false), logits, { kind: 'relu', layer: deconv.name });
  return { layers, groups, order };
}

/**
 * A group whose removed channels feed a zero-padded conv: folding their constant into a bias is
 * wrong under the border (the masked network sees the padding's 0 there). Compaction can keep
 * one "carrier" channel instead, a constant 1 inside the map and 0 in the padding, which is
 * exact everywhere (compact.ts).
 */
export function feedsPaddedConv(graph: PruneGraph, g: ChannelGroup): boolean {
  return g.removal === 'constant' && g.consumers.some((c) => {
    const l = graph.layers.get(c.layer)!;
    return l.kind === 'conv' && l.padding > 0 && l.kernel > 1;
  });
}

/** True for layers whose outputs are never pruned (class scores, box deltas, mask logits, RPN). */
export function isPredictor(layer: Layer): boolean {
  return layer.outGroup === undefined;
}

/**
 * Glob patterns over layer names ('*' any run of characters, '?' one character), or a regular
 * expression written as '/.../'.
 */
export function namePattern(pattern: string): RegExp {
  const re = /^\/(.*)\/([a-z]*)$/.exec(pattern);
  if (re) return new RegExp(re[1], re[2]);
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}
