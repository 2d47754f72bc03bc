// Masking and compaction on the raw state dict. `mask` zeroes the pruned filters (the conv weight
// rows as stored; FrozenBN and biases stay, so a pruned channel still carries a constant, as in
// the study and in NNI issue #2130). `compact` removes them: it slices each producer's weight
// rows and BN tensors and each consumer's input channels (fc6: the 7x7 column block of a
// channel), after folding the constant a removed channel carried into its consumers:
//   consumer with a bias:     bias[o]         += delta[o]
//   consumer followed by BN:  running_mean[o] -= delta[o]     (bn(z + delta) with mean - delta)
// with delta[o] = sum_c v_c * sum_k W[o, c, k] over the removed channels c (float64, rounded
// once). The BN form keeps the file a plain torchvision state dict. This is exact where the
// consumer's window lies inside the map; under a zero-padded border the masked network sees 0
// for the padded taps while the compacted one's bias assumes v_c everywhere (measured in
// tests/prune.test.ts). Groups with removal 'zero' (graph.ts) have their biases zeroed in both
// modes, so they need no compensation.

import type { Tensor } from '../weights-loader/safetensors.ts';
import type { ChannelGroup, ConstantSource, Layer, PruneGraph } from './graph.ts';
import { BN_SUFFIXES } from '../weights-loader/maskrcnn.ts';
import { feedsPaddedConv } from './graph.ts';
import { constrainedPrune, type SelectConstraints } from './rank.ts';

/** What to remove: channels per group, and (kernel granularity) kernels per layer. */
export interface PrunePlan {
  channels: Map<string, Uint8Array>;
  kernels?: Map<string, Uint8Array>;
}

const copy = (t: Tensor): Tensor => ({ dtype: t.dtype, shape: [...t.shape], data: new Float32Array(t.data) });

/** Index of weight (o, i, j) in the layer's stored layout. */
function weightIndex(l: Layer, o: number, i: number, j: number): number {
  return l.kind === 'deconv' ? (i * l.cout + o) * l.kernel + j : (o * l.cin + i) * l.kernel + j;
}

/** The masked state dict: a new map; tensors it changes are copies. */
export function applyMask(graph: PruneGraph, tensors: Map<string, Tensor>, plan: PrunePlan): Map<string, Tensor> {
  const out = new Map(tensors);
  const writable = (key: string): Float32Array => {
    let t = out.get(key)!;
    if (t === tensors.get(key)) out.set(key, (t = copy(t)));
    return t.data;
  };
  for (const [name, removed] of plan.channels) {
    const g = graph.groups.get(name)!;
    if (!removed.some((r) => r)) continue;
    for (const p of g.producers) {
      const l = graph.layers.get(p)!;
      const w = writable(l.weightKey);
      for (let o = 0; o < l.cout; o++) {
        if (!removed[o]) continue;
        for (let i = 0; i < l.cin; i++) for (let j = 0; j < l.kernel; j++) w[weightIndex(l, o, i, j)] = 0;
      }
      if (g.removal === 'zero') {
        if (!l.biasKey) throw new Error(`prune: group '${name}' zeroes its biases but '${l.name}' has none`);
        const b = writable(l.biasKey);
        for (let o = 0; o < l.cout; o++) if (removed[o]) b[o] = 0;
      }
    }
  }
  for (const [name, zeroed] of plan.kernels ?? []) {
    const l = graph.layers.get(name)!;
    if (!zeroed.some((z) => z)) continue;
    const w = writable(l.weightKey);
    for (let o = 0; o < l.cout; o++)
      for (let i = 0; i < l.cin; i++) if (zeroed[o * l.cin + i]) for (let j = 0; j < l.kernel; j++) w[weightIndex(l, o, i, j)] = 0;
  }
  return out;
}

/** The layer's bias after BN folding (torchvision FrozenBatchNorm2d), float64. */
export function effectiveBias(l: Layer, tensors: Map<string, Tensor>, eps: number): Float64Array {
  const b = new Float64Array(l.cout);
  if (l.bnPrefix) {
    const [g, beta, mean, v] = BN_SUFFIXES.map((s) => tensors.get(`${l.bnPrefix}.${s}`)!.data);
    for (let o = 0; o < l.cout; o++) b[o] = beta[o] - mean[o] * (g[o] / Math.sqrt(v[o] + eps));
  } else if (l.biasKey) b.set(tensors.get(l.biasKey)!.data);
  return b;
}

const relu = (x: number) => (x > 0 ? x : 0);

/** The constant each channel of a group carries when its filters are zero, as a consumer sees it. */
export function removedConstants(graph: PruneGraph, tensors: Map<string, Tensor>, source: ConstantSource, eps: number): Float64Array {
  const bias = (name: string) => effectiveBias(graph.layers.get(name)!, tensors, eps);
  if (source.kind === 'relu') return bias(source.layer).map(relu);
  if (source.kind === 'lateral') {
    const sum = bias(`backbone.fpn.inner_blocks.${source.level}.0`);
    for (let j = source.level + 1; j < 4; j++) bias(`backbone.fpn.inner_blocks.${j}.0`).forEach((v, c) => (sum[c] += v));
    return sum;
  }
  const p = `backbone.body.layer${source.stage + 1}`;
  const v = bias(`${p}.0.downsample.0`);
  for (let b = 0; b <= source.block; b++) {
    const conv3 = bias(`${p}.${b}.conv3`);
    // Block 0 adds the downsample's constant, later blocks the previous block's output.
    for (let c = 0; c < v.length; c++) v[c] = relu(conv3[c] + v[c]);
  }
  return v;
}

/**
 * Folds removed channels' constants into every consumer of `g`: constants and weights are read
 * from the masked dict, the updated biases / running means are written to `out` (new tensors).
 */
function compensate(graph: PruneGraph, masked: Map<string, Tensor>, out: Map<string, Tensor>, g: ChannelGroup, removed: Uint8Array, eps: number): void {
  if (g.removal !== 'constant') return;
  const channels = [...removed.keys()].filter((c) => removed[c]);
  for (const consumer of g.consumers) {
    const l = graph.layers.get(consumer.layer)!;
    const v = removedConstants(graph, masked, consumer.constant!, eps);
    if (l.kind === 'deconv') throw new Error(`prune: cannot fold a constant input into the transposed conv '${l.name}'`);
    const w = masked.get(l.weightKey)!.data;
    const delta = new Float64Array(l.cout);
    for (let o = 0; o < l.cout; o++) {
      let d = 0;
      for (const c of channels) {
        if (v[c] === 0) continue;
        let s = 0;
        for (let j = 0; j < l.kernel; j++) s += w[weightIndex(l, o, c, j)];
        d += v[c] * s;
      }
      delta[o] = d;
    }
    if (l.biasKey) {
      const b = out.get(l.biasKey)!;
      const data = new Float32Array(b.data);
      for (let o = 0; o < l.cout; o++) data[o] = b.data[o] + delta[o];
      out.set(l.biasKey, { ...b, data });
    } else if (l.bnPrefix) {
      const key = `${l.bnPrefix}.running_mean`;
      const m = out.get(key)!;
      const data = new Float32Array(m.data);
      for (let o = 0; o < l.cout; o++) data[o] = m.data[o] - delta[o];
      out.set(key, { ...m, data });
    } else throw new Error(`prune: '${l.name}' has neither a bias nor a batch norm to take the compensation`);
  }
}

/** Makes removed channel `c` of `g` output the constant 1 (0 in padding, like any channel). */
function setCarrierProducer(graph: PruneGraph, out: Map<string, Tensor>, g: ChannelGroup, c: number): void {
  const set = (key: string, value: number) => {
    const t = out.get(key)!;
    const data = new Float32Array(t.data);
    data[c] = value;
    out.set(key, { ...t, data });
  };
  // The FPN laterals are summed top-down: a 1 in the top level's bias reaches every level.
  const producers = g.name === 'backbone.fpn.inner_blocks' ? g.producers.map((p, i) => [p, i === g.producers.length - 1 ? 1 : 0] as const) : [[g.producers[0], 1] as const];
  if (g.producers.length > 1 && g.name !== 'backbone.fpn.inner_blocks') throw new Error(`prune: no carrier channel rule for the coupled group '${g.name}'`);
  for (const [name, value] of producers) {
    const l = graph.layers.get(name)!;
    if (l.bnPrefix) {
      // FrozenBN with scale 0: output = bias - mean * 0 = 1 whatever the (zero) conv gives.
      [['weight', 0], ['bias', value], ['running_mean', 0], ['running_var', 1]].forEach(([s, v]) => set(`${l.bnPrefix}.${s}`, v as number));
    } else set(l.biasKey!, value);
  }
}

/**
 * Keeps removed channel c* as a carrier: the producer outputs 1 there, and each consumer's
 * column c* becomes sum_c v_c W[o, c, k] over the removed channels. Inside the map this adds the
 * same as the masked network's constants; under the zero padding both see 0 (exact everywhere).
 */
function foldIntoCarrier(graph: PruneGraph, masked: Map<string, Tensor>, out: Map<string, Tensor>, g: ChannelGroup, removed: Uint8Array, carrier: number, eps: number): void {
  const channels = [...removed.keys()].filter((c) => removed[c]);
  for (const consumer of g.consumers) {
    const l = graph.layers.get(consumer.layer)!;
    const v = removedConstants(graph, masked, consumer.constant!, eps);
    const src = masked.get(l.weightKey)!;
    const w = new Float32Array(out.get(l.weightKey)!.data);
    for (let o = 0; o < l.cout; o++)
      for (let j = 0; j < l.kernel; j++) {
        let sum = 0;
        for (const c of channels) sum += v[c] * src.data[weightIndex(l, o, c, j)];
        w[weightIndex(l, o, carrier, j)] = sum;
      }
    out.set(l.weightKey, { ...src, data: w });
  }
  setCarrierProducer(graph, out, g, carrier);
}

export type Compensation = 'carrier' | 'bias' | 'none';

export interface Compacted {
  tensors: Map<string, Tensor>;
  /** Channels kept per group (carriers included), in order. */
  kept: Map<string, number[]>;
  /** Groups that kept a carrier channel, and which. */
  carriers: Map<string, number>;
}

/**
 * Compacts a masked state dict: compensation, then every layer sliced to its kept output and
 * input channels. `channels` lists the removed channels of each group (as masked). With
 * 'carrier', groups feeding a padded conv keep their first removed channel as a carrier when a
 * constant needs carrying, or when the plan's kept count relied on it (round-to, min channels).
 */
export function compactTensors(
  graph: PruneGraph,
  masked: Map<string, Tensor>,
  channels: Map<string, Uint8Array>,
  eps: number,
  compensation: Compensation = 'carrier',
  constraints: { roundTo: number; minChannels: number } = { roundTo: 1, minChannels: 1 },
): Compacted {
  const out = new Map(masked);
  const kept = new Map<string, number[]>();
  const carriers = new Map<string, number>();
  for (const g of graph.groups.values()) {
    const removed = channels.get(g.name) ?? new Uint8Array(g.channels);
    const list = [...removed.keys()].filter((c) => !removed[c]);
    kept.set(g.name, list);
    if (list.length === g.channels || g.removal !== 'constant') continue;
    if (compensation === 'none') continue;
    const first = removed.indexOf(1);
    if (compensation === 'carrier' && feedsPaddedConv(graph, g)) {
      const needed = g.consumers.some((c) => removedConstants(graph, masked, c.constant!, eps).some((v, ch) => removed[ch] && v !== 0));
      // An idle carrier still counts where the plan relied on it (round-to, min channels).
      if (needed || constraints.roundTo > 1 || list.length < Math.max(1, constraints.minChannels)) {
        foldIntoCarrier(graph, masked, out, g, removed, first, eps);
        carriers.set(g.name, first);
        kept.set(g.name, [...list, first].sort((a, b) => a - b));
      }
      continue;
    }
    compensate(graph, masked, out, g, removed, eps);
  }
  for (const name of graph.order) {
    const l = graph.layers.get(name)!;
    const outIdx = l.outGroup ? kept.get(l.outGroup)! : [...Array(l.cout).keys()];
    const inIdx = l.inGroup ? kept.get(l.inGroup)! : [...Array(l.cin).keys()];
    if (outIdx.length === l.cout && inIdx.length === l.cin) continue;
    const w = out.get(l.weightKey)!;
    const data = new Float32Array(outIdx.length * inIdx.length * l.kernel);
    const sliced: Layer = { ...l, cout: outIdx.length, cin: inIdx.length };
    outIdx.forEach((o, oi) =>
      inIdx.forEach((i, ii) => {
        for (let j = 0; j < l.kernel; j++) data[weightIndex(sliced, oi, ii, j)] = w.data[weightIndex(l, o, i, j)];
      }),
    );
    const shape = [...w.shape];
    if (l.kind === 'deconv') [shape[0], shape[1]] = [inIdx.length, outIdx.length];
    else [shape[0], shape[1]] = [outIdx.length, inIdx.length * (l.kind === 'linear' ? l.kernel : 1)];
    out.set(l.weightKey, { dtype: w.dtype, shape, data });
    if (outIdx.length === l.cout) continue;
    const perChannel = [...(l.biasKey ? [l.biasKey] : []), ...(l.bnPrefix ? BN_SUFFIXES.map((s) => `${l.bnPrefix}.${s}`) : [])];
    for (const key of perChannel) {
      const t = out.get(key)!;
      out.set(key, { dtype: t.dtype, shape: [outIdx.length], data: Float32Array.from(outIdx, (o) => t.data[o]) });
    }
  }
  return { tensors: out, kept, carriers };
}

/**
 * Channels whose filters are all zero in every producer (what kernel-level masking emptied), as
 * many as the constraints let go (the first ones; the rest stay as zero filters).
 */
export function emptiedChannels(
  graph: PruneGraph,
  masked: Map<string, Tensor>,
  groups: Iterable<string>,
  constraints: SelectConstraints,
  carrier: (g: ChannelGroup) => boolean,
): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const name of groups) {
    const g = graph.groups.get(name)!;
    const empty = new Uint8Array(g.channels).fill(g.removal === 'constant' ? 1 : 0);
    for (const p of g.producers) {
      const l = graph.layers.get(p)!;
      const w = masked.get(l.weightKey)!.data;
      for (let o = 0; o < l.cout; o++) {
        for (let i = 0; i < l.cin && empty[o]; i++) for (let j = 0; j < l.kernel; j++) if (w[weightIndex(l, o, i, j)] !== 0) empty[o] = 0;
      }
    }
    let allowed = constrainedPrune(g.channels, empty.reduce((a, b) => a + b, 0), constraints, carrier(g));
    out.set(name, empty.map((e) => (e && allowed-- > 0 ? 1 : 0)));
  }
  return out;
}
