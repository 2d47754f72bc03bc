// torchvision maskrcnn_resnet50_fpn (v1) state dict -> the engine's parameters. Key names and
// shapes follow torchvision 0.14+ (models/detection/mask_rcnn.py, backbone_utils.py, resnet.py,
// ops/feature_pyramid_network.py); the 26 pre-0.13 names are accepted too. FrozenBatchNorm2d is
// folded into its conv once, here. Every channel count is read from the tensor shapes and checked
// against its producer, so pruned (narrower) files load with no special path. Browser-safe.

import { metaEps, parseMaskRCNNMeta, WeightsError, type MaskRCNNMeta } from './metadata.ts';
import type { ParseOptions, SafetensorsFile, Tensor } from './safetensors.ts';

export { COCO_CLASSES, parseMaskRCNNMeta, WeightsError } from './metadata.ts';
export type { MaskRCNNMeta } from './metadata.ts';


export interface ConvParams {
  /** torch layout [Cout][Cin][KH][KW], BN already folded in where the layer had one. */
  weight: Float32Array;
  bias: Float32Array;
  cout: number;
  cin: number;
  kh: number;
  kw: number;
  stride: number;
  padding: number;
}
export interface LinearParams {
  /** [out][in] */
  weight: Float32Array;
  bias: Float32Array;
  inFeatures: number;
  outFeatures: number;
}
export interface BottleneckParams {
  conv1: ConvParams;
  conv2: ConvParams;
  conv3: ConvParams;
  downsample?: ConvParams;
}
export interface MaskRCNNWeights {
  meta: MaskRCNNMeta;
  /** conv1 + bn1 folded, 7x7 stride 2 pad 3. */
  stem: ConvParams;
  /** layer1..layer4; stride 2 on conv2 and downsample of block 0 in layer2..4 (v1.5). */
  layers: BottleneckParams[][];
  /** 4 each: inner 1x1 pad 0, layer 3x3 pad 1, with bias. */
  fpn: { inner: ConvParams[]; layer: ConvParams[] };
  rpn: { conv: ConvParams; cls: ConvParams; bbox: ConvParams; numAnchors: number };
  boxHead: { fc6: LinearParams; fc7: LinearParams };
  boxPredictor: { cls: LinearParams; bbox: LinearParams };
  /** 4 x (3x3 pad 1, bias), each followed by ReLU. */
  maskHead: ConvParams[];
  maskPredictor: {
    /** torch ConvTranspose2d weight [Cin][Cout][2][2], kernel = stride = scale. */
    deconv: { weight: Float32Array; bias: Float32Array; cin: number; cout: number; scale: number };
    logits: ConvParams;
  };
}


/** ResNet-50 blocks per stage. */
export const RESNET50_BLOCKS = [3, 4, 6, 3] as const;
/** The tensors of a (Frozen)BatchNorm2d, as '<prefix>.<suffix>' in a torchvision state dict. */
export const BN_SUFFIXES = ['weight', 'bias', 'running_mean', 'running_var'] as const;
const EXPORT_HINT = 'export the model with tools/export_torchvision.py';

/** Parse options that skip the int64 `num_batches_tracked` counters BatchNorm layers carry. */
export const maskrcnnParseOptions: ParseOptions = { skipTensor: (name) => name.endsWith('.num_batches_tracked') };

/** The 307 keys of a torchvision 0.14+ maskrcnn_resnet50_fpn state dict, in state_dict order. */
export function maskrcnnV1KeyNames(): string[] {
  const keys: string[] = [];
  const bn = (p: string) => BN_SUFFIXES.forEach((s) => keys.push(`${p}.${s}`));
  const wb = (p: string) => keys.push(`${p}.weight`, `${p}.bias`);
  keys.push('backbone.body.conv1.weight');
  bn('backbone.body.bn1');
  RESNET50_BLOCKS.forEach((n, l) => {
    for (let b = 0; b < n; b++) {
      const p = `backbone.body.layer${l + 1}.${b}`;
      for (const i of [1, 2, 3]) {
        keys.push(`${p}.conv${i}.weight`);
        bn(`${p}.bn${i}`);
      }
      if (b === 0) {
        keys.push(`${p}.downsample.0.weight`);
        bn(`${p}.downsample.1`);
      }
    }
  });
  for (const kind of ['inner', 'layer']) for (let i = 0; i < 4; i++) wb(`backbone.fpn.${kind}_blocks.${i}.0`);
  ['rpn.head.conv.0.0', 'rpn.head.cls_logits', 'rpn.head.bbox_pred'].forEach(wb);
  ['fc6', 'fc7'].forEach((n) => wb(`roi_heads.box_head.${n}`));
  ['cls_score', 'bbox_pred'].forEach((n) => wb(`roi_heads.box_predictor.${n}`));
  for (let k = 0; k < 4; k++) wb(`roi_heads.mask_head.${k}.0`);
  ['conv5_mask', 'mask_fcn_logits'].forEach((n) => wb(`roi_heads.mask_predictor.${n}`));
  return keys;
}

// torchvision < 0.13 names, renamed on load by the modules' _load_from_state_dict (version < 2).
const LEGACY_RULES: Array<[RegExp, (m: RegExpExecArray) => string]> = [
  [/^backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.(weight|bias)$/, (m) => `backbone.fpn.${m[1]}_blocks.${m[2]}.0.${m[3]}`],
  [/^rpn\.head\.conv\.(weight|bias)$/, (m) => `rpn.head.conv.0.0.${m[1]}`],
  [/^roi_heads\.mask_head\.mask_fcn([1-9]\d*)\.(weight|bias)$/, (m) => `roi_heads.mask_head.${Number(m[1]) - 1}.0.${m[2]}`],
];

export function canonicalKeyName(name: string): string {
  for (const [re, rename] of LEGACY_RULES) {
    const m = re.exec(name);
    if (m) return rename(m);
  }
  return name;
}

/** Legacy -> current names; drops `num_batches_tracked`; refuses a key present in both forms. */
export function canonicalizeKeys(tensors: Map<string, Tensor>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const source = new Map<string, string>();
  for (const [name, t] of tensors) {
    if (name.endsWith('.num_batches_tracked')) continue;
    const canonical = canonicalKeyName(name);
    const earlier = source.get(canonical);
    if (earlier !== undefined) {
      throw new WeightsError(`both '${earlier}' and '${name}' are present: they are the legacy and current names of the same tensor; keep only one`, name);
    }
    source.set(canonical, name);
    out.set(canonical, t);
  }
  return out;
}

/**
 * torchvision FrozenBatchNorm2d after a bias-free conv: scale = weight * rsqrt(running_var + eps),
 * bias = bias - running_mean * scale, so bn(conv(x, w)) = conv(x, w * scale[o]) + bias[o].
 * Computed in float64 and rounded once to float32.
 */
export function foldFrozenBatchNorm(
  convWeight: Float32Array,
  cout: number,
  bn: { weight: Float32Array; bias: Float32Array; running_mean: Float32Array; running_var: Float32Array },
  eps: number,
): { weight: Float32Array; bias: Float32Array } {
  if (cout <= 0 || convWeight.length % cout !== 0) throw new WeightsError(`conv weight of ${convWeight.length} values cannot have ${cout} output channels`);
  for (const s of BN_SUFFIXES) {
    if (bn[s].length !== cout) throw new WeightsError(`batch norm ${s} has ${bn[s].length} values, expected ${cout} (one per conv output channel)`);
  }
  const per = convWeight.length / cout;
  const weight = new Float32Array(convWeight.length);
  const bias = new Float32Array(cout);
  for (let o = 0; o < cout; o++) {
    const scale = bn.weight[o] / Math.sqrt(bn.running_var[o] + eps);
    bias[o] = bn.bias[o] - bn.running_mean[o] * scale;
    for (let i = o * per; i < (o + 1) * per; i++) weight[i] = convWeight[i] * scale;
  }
  return { weight, bias };
}

/** Who produces a layer's input: its channel count and a name for error messages. */
interface Producer {
  channels: number;
  what: string;
}

const fmt = (shape: ArrayLike<number | string>) => `[${Array.from(shape).join(', ')}]`;

class TensorReader {
  readonly used = new Set<string>();

  constructor(
    private readonly tensors: Map<string, Tensor>,
    private readonly eps: number,
  ) {}

  get(key: string, part: string, shape: Array<number | string>): Tensor {
    const t = this.tensors.get(key);
    if (!t) {
      throw new WeightsError(`missing tensor '${key}', needed by ${part}: the file is not a complete torchvision maskrcnn_resnet50_fpn (v1) state dict; ${EXPORT_HINT}`, key);
    }
    if (t.shape.length !== shape.length || shape.some((d, i) => (typeof d === 'number' ? t.shape[i] !== d : t.shape[i] < 1))) {
      throw new WeightsError(`tensor '${key}' (${part}) has shape ${fmt(t.shape)}, expected ${fmt(shape)}`, key);
    }
    // torchvision would load these and return garbage (NaN scores, no detections): refuse them.
    let nonFinite = 0;
    let first = -1;
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) {
        nonFinite++;
        if (first < 0) first = i;
      }
    }
    if (nonFinite) {
      throw new WeightsError(
        `tensor '${key}' (${part}) holds ${nonFinite} non-finite value${nonFinite > 1 ? 's' : ''} of ${t.data.length} (the first, ${t.data[first]} at index ${first}): ` +
          'the weights are corrupt (or overflowed when stored as F16); re-export them from the original checkpoint',
        key,
      );
    }
    this.used.add(key);
    return t;
  }

  private convWeight(key: string, part: string, k: number, input: Producer): Tensor {
    const t = this.get(key, part, ['out', 'in', k, k]);
    if (t.shape[1] !== input.channels) {
      throw new WeightsError(
        `'${key}' takes ${t.shape[1]} input channels but ${input.what} outputs ${input.channels}: producer and consumer channels must match (a pruned file must narrow both)`,
        key,
      );
    }
    return t;
  }

  /** A bias-free conv followed by FrozenBatchNorm2d, folded. */
  bnConv(conv: string, bn: string, part: string, k: number, input: Producer, stride: number, padding: number): ConvParams {
    const w = this.convWeight(`${conv}.weight`, part, k, input);
    const cout = w.shape[0];
    const p = {} as Record<(typeof BN_SUFFIXES)[number], Float32Array>;
    for (const s of BN_SUFFIXES) p[s] = this.get(`${bn}.${s}`, `${part} (batch norm after '${conv}', ${cout} channels)`, [cout]).data;
    const folded = foldFrozenBatchNorm(w.data, cout, p, this.eps);
    const per = w.data.length / cout;
    for (let i = 0; i < w.data.length; i++) {
      const o = Math.floor(i / per);
      if (!Number.isFinite(folded.weight[i]) || !Number.isFinite(folded.bias[o])) {
        throw new WeightsError(
          `folding '${bn}' gives a non-finite scale at channel ${o} (running_var ${p.running_var[o]}, eps ${this.eps}): set the 'eps' metadata to the model's batch-norm eps (torchvision's default 1e-5; its COCO weights use 0)`,
          `${bn}.running_var`,
        );
      }
    }
    return { ...folded, cout, cin: w.shape[1], kh: k, kw: k, stride, padding };
  }

  /** A conv with its own bias (FPN, RPN, mask head). */
  biasConv(prefix: string, part: string, k: number, input: Producer, padding: number): ConvParams {
    const w = this.convWeight(`${prefix}.weight`, part, k, input);
    const cout = w.shape[0];
    const b = this.get(`${prefix}.bias`, part, [cout]);
    return { weight: w.data, bias: b.data, cout, cin: w.shape[1], kh: k, kw: k, stride: 1, padding };
  }

  linear(prefix: string, part: string, input: Producer): LinearParams {
    const w = this.get(`${prefix}.weight`, part, ['out', 'in']);
    if (w.shape[1] !== input.channels) {
      throw new WeightsError(`'${prefix}.weight' takes ${w.shape[1]} input features but ${input.what} gives ${input.channels}: producer and consumer sizes must match`, `${prefix}.weight`);
    }
    const b = this.get(`${prefix}.bias`, part, [w.shape[0]]);
    return { weight: w.data, bias: b.data, inFeatures: w.shape[1], outFeatures: w.shape[0] };
  }
}

function rejectUnexpectedKeys(tensors: Map<string, Tensor>): void {
  const expected = new Set(maskrcnnV1KeyNames());
  const extra = [...tensors.keys()].filter((k) => !expected.has(k));
  if (!extra.length) return;
  const isV2 = extra.some((k) => /^roi_heads\.box_head\.\d/.test(k) || /^rpn\.head\.conv\.1\./.test(k) || /^(backbone\.fpn\.\w+|roi_heads\.mask_head)\.\d+\.1\./.test(k));
  const hint = isV2
    ? 'This looks like maskrcnn_resnet50_fpn_v2, a different architecture (BatchNorm in the FPN and heads, a conv box head) that maskgpu does not run; export maskrcnn_resnet50_fpn (v1) with tools/export_torchvision.py'
    : extra.every((k) => k.startsWith('module.'))
      ? "The keys carry a 'module.' prefix (a model saved inside DataParallel): strip it when exporting"
      : `maskgpu runs torchvision maskrcnn_resnet50_fpn (v1) only; ${EXPORT_HINT}`;
  const listed = extra.slice(0, 5).map((k) => `'${k}'`).join(', ') + (extra.length > 5 ? ` and ${extra.length - 5} more` : '');
  throw new WeightsError(`${extra.length} unexpected tensor${extra.length > 1 ? 's' : ''} for maskrcnn_resnet50_fpn (v1): ${listed}. ${hint}`, extra[0]);
}

export function loadMaskRCNNWeights(file: SafetensorsFile): MaskRCNNWeights {
  const tensors = canonicalizeKeys(file.tensors);
  rejectUnexpectedKeys(tensors);
  const r = new TensorReader(tensors, metaEps(file.metadata));

  const stem = r.bnConv('backbone.body.conv1', 'backbone.body.bn1', 'the ResNet stem', 7, { channels: 3, what: 'the RGB image' }, 2, 3);
  let prev: Producer = { channels: stem.cout, what: "the stem ('backbone.body.conv1')" };
  const stageOutputs: Producer[] = [];
  const layers = RESNET50_BLOCKS.map((n, l) => {
    const blocks: BottleneckParams[] = [];
    for (let b = 0; b < n; b++) {
      const p = `backbone.body.layer${l + 1}.${b}`;
      const part = `ResNet layer${l + 1} block ${b}`;
      const stride = b === 0 && l > 0 ? 2 : 1;
      const conv1 = r.bnConv(`${p}.conv1`, `${p}.bn1`, part, 1, prev, 1, 0);
      const conv2 = r.bnConv(`${p}.conv2`, `${p}.bn2`, part, 3, { channels: conv1.cout, what: `'${p}.conv1'` }, stride, 1);
      const conv3 = r.bnConv(`${p}.conv3`, `${p}.bn3`, part, 1, { channels: conv2.cout, what: `'${p}.conv2'` }, 1, 0);
      const downsample = b === 0 ? r.bnConv(`${p}.downsample.0`, `${p}.downsample.1`, part, 1, prev, stride, 0) : undefined;
      const identity = downsample ? { channels: downsample.cout, what: `'${p}.downsample.0'` } : prev;
      if (identity.channels !== conv3.cout) {
        throw new WeightsError(
          `'${p}.conv3.weight' outputs ${conv3.cout} channels but the residual it is added to (${identity.what}) has ${identity.channels}: they must match`,
          `${p}.conv3.weight`,
        );
      }
      blocks.push({ conv1, conv2, conv3, downsample });
      prev = { channels: conv3.cout, what: `layer${l + 1} ('${p}.conv3')` };
    }
    stageOutputs.push(prev);
    return blocks;
  });

  const inner: ConvParams[] = [];
  const layer: ConvParams[] = [];
  for (let i = 0; i < 4; i++) {
    inner.push(r.biasConv(`backbone.fpn.inner_blocks.${i}.0`, `FPN lateral ${i}`, 1, stageOutputs[i], 0));
    layer.push(r.biasConv(`backbone.fpn.layer_blocks.${i}.0`, `FPN output ${i}`, 3, { channels: inner[i].cout, what: `'backbone.fpn.inner_blocks.${i}.0'` }, 1));
  }
  for (let i = 0; i < 3; i++) {
    // Laterals are summed with the upsampled level above; all outputs feed the same heads.
    for (const [kind, list] of [['inner', inner], ['layer', layer]] as const) {
      if (list[i].cout !== list[3].cout) {
        throw new WeightsError(
          `'backbone.fpn.${kind}_blocks.${i}.0.weight' outputs ${list[i].cout} channels but 'backbone.fpn.${kind}_blocks.3.0.weight' outputs ${list[3].cout}: all FPN levels must have the same width`,
          `backbone.fpn.${kind}_blocks.${i}.0.weight`,
        );
      }
    }
  }
  const fpnOut: Producer = { channels: layer[0].cout, what: 'the FPN (backbone.fpn.layer_blocks)' };

  const rpnConv = r.biasConv('rpn.head.conv.0.0', 'the RPN head', 3, fpnOut, 1);
  const rpnIn: Producer = { channels: rpnConv.cout, what: "'rpn.head.conv.0.0'" };
  const rpnCls = r.biasConv('rpn.head.cls_logits', 'the RPN head', 1, rpnIn, 0);
  const numAnchors = rpnCls.cout;
  const rpnBbox = r.biasConv('rpn.head.bbox_pred', 'the RPN head', 1, rpnIn, 0);
  if (rpnBbox.cout !== 4 * numAnchors) {
    throw new WeightsError(
      `'rpn.head.bbox_pred.weight' has ${rpnBbox.cout} outputs but 'rpn.head.cls_logits.weight' has ${numAnchors} anchors per location: expected 4 x ${numAnchors} = ${4 * numAnchors}`,
      'rpn.head.bbox_pred.weight',
    );
  }

  const pooled = fpnOut.channels * 7 * 7;
  const fc6 = r.linear('roi_heads.box_head.fc6', 'the box head', { channels: pooled, what: `the 7x7 RoIAlign of ${fpnOut.channels} FPN channels (${fpnOut.channels}*7*7)` });
  const fc7 = r.linear('roi_heads.box_head.fc7', 'the box head', { channels: fc6.outFeatures, what: "'roi_heads.box_head.fc6'" });
  const fc7Out: Producer = { channels: fc7.outFeatures, what: "'roi_heads.box_head.fc7'" };
  const cls = r.linear('roi_heads.box_predictor.cls_score', 'the box predictor', fc7Out);
  const numClasses = cls.outFeatures;
  const bbox = r.linear('roi_heads.box_predictor.bbox_pred', 'the box predictor', fc7Out);
  if (bbox.outFeatures !== 4 * numClasses) {
    throw new WeightsError(
      `'roi_heads.box_predictor.bbox_pred.weight' has ${bbox.outFeatures} outputs but 'roi_heads.box_predictor.cls_score.weight' has ${numClasses} classes: expected 4 x ${numClasses} = ${4 * numClasses}`,
      'roi_heads.box_predictor.bbox_pred.weight',
    );
  }

  const maskHead: ConvParams[] = [];
  let maskIn = fpnOut;
  for (let k = 0; k < 4; k++) {
    maskHead.push(r.biasConv(`roi_heads.mask_head.${k}.0`, `mask head conv ${k}`, 3, maskIn, 1));
    maskIn = { channels: maskHead[k].cout, what: `'roi_heads.mask_head.${k}.0'` };
  }
  const deconvW = r.get('roi_heads.mask_predictor.conv5_mask.weight', 'the mask predictor', ['in', 'out', 2, 2]);
  if (deconvW.shape[0] !== maskIn.channels) {
    throw new WeightsError(
      `'roi_heads.mask_predictor.conv5_mask.weight' (ConvTranspose2d, [in, out, 2, 2]) takes ${deconvW.shape[0]} input channels but ${maskIn.what} outputs ${maskIn.channels}`,
      'roi_heads.mask_predictor.conv5_mask.weight',
    );
  }
  const deconvB = r.get('roi_heads.mask_predictor.conv5_mask.bias', 'the mask predictor', [deconvW.shape[1]]);
  const deconv = { weight: deconvW.data, bias: deconvB.data, cin: deconvW.shape[0], cout: deconvW.shape[1], scale: 2 };
  const logits = r.biasConv('roi_heads.mask_predictor.mask_fcn_logits', 'the mask predictor', 1, { channels: deconv.cout, what: "'roi_heads.mask_predictor.conv5_mask'" }, 0);
  if (logits.cout !== numClasses) {
    throw new WeightsError(
      `'roi_heads.mask_predictor.mask_fcn_logits.weight' has ${logits.cout} classes but 'roi_heads.box_predictor.cls_score.weight' has ${numClasses}: both predictors must use the same classes`,
      'roi_heads.mask_predictor.mask_fcn_logits.weight',
    );
  }
  if (r.used.size !== tensors.size) throw new Error(`internal: loader read ${r.used.size} of ${tensors.size} expected tensors`);

  return {
    meta: parseMaskRCNNMeta(file.metadata, numClasses),
    stem,
    layers,
    fpn: { inner, layer },
    rpn: { conv: rpnConv, cls: rpnCls, bbox: rpnBbox, numAnchors },
    boxHead: { fc6, fc7 },
    boxPredictor: { cls, bbox },
    maskHead,
    maskPredictor: { deconv, logits },
  };
}
