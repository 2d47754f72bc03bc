// A seeded, narrow maskrcnn_resnet50_fpn (v1) state dict with torchvision's key names and shape
// structure (tests/fixtures/weights/maskrcnn_v1_state_dict_keys.tsv at widthDiv 1, 91 classes),
// every width divided by `widthDiv`: a stand-in for real or pruned weights in tests that need no
// torchvision. Values are He-scaled so a forward pass stays O(1); batch norms have nontrivial stats.

import { maskrcnnV1KeyNames, RESNET50_BLOCKS } from '../weights-loader/maskrcnn.ts';
import type { SafetensorsFile, Tensor } from '../weights-loader/safetensors.ts';
import { normal, uniform } from './random.ts';

export interface SyntheticModelOptions {
  /** Divides torchvision's widths (stem 64, bottleneck 64..512, FPN 256, fc 1024). Default 8. */
  widthDiv?: number;
  /** Including the background. Default 5. */
  numClasses?: number;
  /** Anchors per location. Default 3. */
  numAnchors?: number;
  /** Bottleneck internal widths by block, e.g. { 'layer2.1': 37 } or [conv1 out, conv2 out] (pruned). */
  blockWidths?: Record<string, number | [number, number]>;
  seed?: number;
}

/** [key, shape] in torchvision's state_dict order. */
export function maskrcnnV1Shapes(opts: SyntheticModelOptions = {}): Array<[string, number[]]> {
  const d = opts.widthDiv ?? 8;
  const w = (c: number) => {
    if (c % d) throw new Error(`widthDiv ${d} does not divide ${c}`);
    return c / d;
  };
  const numClasses = opts.numClasses ?? 5;
  const anchors = opts.numAnchors ?? 3;
  const out: Array<[string, number[]]> = [];
  const bn = (p: string, c: number) => ['weight', 'bias', 'running_mean', 'running_var'].forEach((s) => out.push([`${p}.${s}`, [c]]));
  const conv = (p: string, cout: number, cin: number, k: number) => out.push([`${p}.weight`, [cout, cin, k, k]]);
  const withBias = (p: string, shape: number[]) => out.push([`${p}.weight`, shape], [`${p}.bias`, [shape[0]]]);

  conv('backbone.body.conv1', w(64), 3, 7);
  bn('backbone.body.bn1', w(64));
  let cin = w(64);
  const stageOut: number[] = [];
  RESNET50_BLOCKS.forEach((n, l) => {
    const base = w(64 << l);
    for (let b = 0; b < n; b++) {
      const p = `backbone.body.layer${l + 1}.${b}`;
      const o = opts.blockWidths?.[`layer${l + 1}.${b}`] ?? base;
      const [m1, m2] = typeof o === 'number' ? [o, o] : o;
      conv(`${p}.conv1`, m1, cin, 1);
      bn(`${p}.bn1`, m1);
      conv(`${p}.conv2`, m2, m1, 3);
      bn(`${p}.bn2`, m2);
      conv(`${p}.conv3`, 4 * base, m2, 1);
      bn(`${p}.bn3`, 4 * base);
      if (b === 0) {
        conv(`${p}.downsample.0`, 4 * base, cin, 1);
        bn(`${p}.downsample.1`, 4 * base);
      }
      cin = 4 * base;
    }
    stageOut.push(cin);
  });
  const fpn = w(256);
  stageOut.forEach((c, i) => withBias(`backbone.fpn.inner_blocks.${i}.0`, [fpn, c, 1, 1]));
  for (let i = 0; i < 4; i++) withBias(`backbone.fpn.layer_blocks.${i}.0`, [fpn, fpn, 3, 3]);
  withBias('rpn.head.conv.0.0', [fpn, fpn, 3, 3]);
  withBias('rpn.head.cls_logits', [anchors, fpn, 1, 1]);
  withBias('rpn.head.bbox_pred', [4 * anchors, fpn, 1, 1]);
  const rep = w(1024);
  withBias('roi_heads.box_head.fc6', [rep, fpn * 7 * 7]);
  withBias('roi_heads.box_head.fc7', [rep, rep]);
  withBias('roi_heads.box_predictor.cls_score', [numClasses, rep]);
  withBias('roi_heads.box_predictor.bbox_pred', [4 * numClasses, rep]);
  for (let k = 0; k < 4; k++) withBias(`roi_heads.mask_head.${k}.0`, [fpn, fpn, 3, 3]);
  withBias('roi_heads.mask_predictor.conv5_mask', [fpn, fpn, 2, 2]);
  withBias('roi_heads.mask_predictor.mask_fcn_logits', [numClasses, fpn, 1, 1]);

  const names = maskrcnnV1KeyNames();
  if (out.length !== names.length || out.some(([k], i) => k !== names[i])) throw new Error('synthetic model keys drifted from maskrcnnV1KeyNames()');
  return out;
}

/** FNV-1a, so each tensor's values depend only on its key and the seed, not on the other widths. */
function keySeed(key: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export function syntheticStateDict(opts: SyntheticModelOptions = {}): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>();
  for (const [key, shape] of maskrcnnV1Shapes(opts)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const s = keySeed(key, opts.seed ?? 1);
    const isBatchNorm = /\.(bn\d|downsample\.1)\./.test(key);
    let data: Float32Array;
    if (key.endsWith('.running_var') || (isBatchNorm && key.endsWith('.weight'))) data = uniform(s, n, 0.5, 1.5);
    else if (key.endsWith('.running_mean')) data = uniform(s, n, -0.2, 0.2);
    else if (key.endsWith('.bias')) data = uniform(s, n, -0.1, 0.1);
    else data = normal(s, n, Math.sqrt(2 / (n / shape[0])));
    tensors.set(key, { dtype: 'F32', shape, data });
  }
  return tensors;
}

export function syntheticMaskRCNNFile(opts: SyntheticModelOptions = {}, metadata: Record<string, string> = {}): SafetensorsFile {
  return { metadata, tensors: syntheticStateDict(opts) };
}

/** The 26 pre-0.13 torchvision names (the original .pth file's), for the same tensors. */
export function toLegacyNames(tensors: Map<string, Tensor>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of tensors) {
    const legacy = k
      .replace(/^backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.0\.(weight|bias)$/, 'backbone.fpn.$1_blocks.$2.$3')
      .replace(/^rpn\.head\.conv\.0\.0\.(weight|bias)$/, 'rpn.head.conv.$1')
      .replace(/^roi_heads\.mask_head\.(\d)\.0\.(weight|bias)$/, (_, i, s) => `roi_heads.mask_head.mask_fcn${Number(i) + 1}.${s}`);
    out.set(legacy, t);
  }
  return out;
}
