// Scores and selection. A filter's score is the L1 norm of the conv weight as stored (Li et al.
// 2017; the study ranks raw weights), optionally times |BN scale| (the folded filter's L1), then
// normalised per layer. A coupled group's channel is scored by reducing its producers' scores
// (their sum ranks a group's channels exactly as their mean does; the mean keeps a group of
// five conv3s comparable with a single layer in global ranking). Selection is global (one
// threshold, as in the study) or per layer/group (the same ratio everywhere), under minimum
// channel, maximum ratio and round-to constraints.

import type { SegmentedTensor } from '../engine/kernels/l1Norms.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';
import type { Layer } from './graph.ts';

export type Normalize = 'none' | 'mean' | 'fanin';
export type GroupReduction = 'mean' | 'sum';

/** The layer's weight viewed as filters ([Cout][Cin*K]) or kernels ([Cout*Cin][K]) for l1Norms. */
export function layerSegments(layer: Layer, weight: Float32Array, granularity: 'filter' | 'kernel'): SegmentedTensor {
  let data = weight;
  if (layer.kind === 'deconv') {
    // ConvTranspose2d stores [Cin][Cout][K]: an output filter is strided, so transpose it once.
    data = new Float32Array(weight.length);
    const { cin, cout, kernel: k } = layer;
    for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) data.set(weight.subarray((i * cout + o) * k, (i * cout + o + 1) * k), (o * cin + i) * k);
  }
  return granularity === 'filter'
    ? { data, size: layer.cin * layer.kernel, count: layer.cout }
    : { data, size: layer.kernel, count: layer.cout * layer.cin };
}

/** |gamma| / sqrt(running_var + eps) per output channel, or ones for layers without BN. */
export function bnScale(layer: Layer, tensors: Map<string, Tensor>, eps: number): Float64Array {
  const s = new Float64Array(layer.cout).fill(1);
  if (!layer.bnPrefix) return s;
  const g = tensors.get(`${layer.bnPrefix}.weight`)!.data;
  const v = tensors.get(`${layer.bnPrefix}.running_var`)!.data;
  for (let o = 0; o < layer.cout; o++) s[o] = Math.abs(g[o]) / Math.sqrt(v[o] + eps);
  return s;
}

/**
 * Per-layer normalisation of raw L1 norms (one per filter, or one per kernel with `perRow` = cin).
 * 'mean' divides by the layer's mean; 'fanin' by the number of weights a norm sums (mean |w|).
 */
export function normalizeScores(norms: ArrayLike<number>, scale: Float64Array, perRow: number, weightsPerNorm: number, normalize: Normalize): Float64Array {
  const out = new Float64Array(norms.length);
  for (let i = 0; i < norms.length; i++) out[i] = norms[i] * scale[Math.floor(i / perRow)];
  let divisor = 1;
  if (normalize === 'fanin') divisor = weightsPerNorm;
  else if (normalize === 'mean') {
    const mean = out.reduce((a, b) => a + b, 0) / Math.max(1, out.length);
    divisor = mean > 0 ? mean : 1;
  }
  for (let i = 0; i < out.length; i++) out[i] /= divisor;
  return out;
}

/** A group's channel scores from its producers' (already normalised) filter scores. */
export function reduceGroup(producerScores: Float64Array[], reduction: GroupReduction): Float64Array {
  const out = new Float64Array(producerScores[0].length);
  for (const s of producerScores) for (let c = 0; c < out.length; c++) out[c] += s[c];
  if (reduction === 'mean') for (let c = 0; c < out.length; c++) out[c] /= producerScores.length;
  return out;
}

export interface SelectConstraints {
  /** Channels every group keeps at least (capped by its size; at least 1 for a loadable file). */
  minChannels: number;
  /** Kept counts are rounded up to a multiple of this (or to the whole group). */
  roundTo: number;
  /** At most this fraction of one group's channels is removed. */
  maxLayerRatio: number;
}

/**
 * How many channels a group of `channels` has removed (zeroed in the mask) when the ranking asks
 * for `wanted`. With a carrier (compact.ts), compaction keeps one of the removed channels as the
 * carrier of their constants, so the constraints apply to channels - removed + 1 and removing a
 * single channel gains nothing.
 */
export function constrainedPrune(channels: number, wanted: number, c: SelectConstraints, carrier = false): number {
  const extra = carrier ? 1 : 0;
  const w = Math.min(wanted, channels);
  if (w <= extra) return 0;
  let keep = channels - w + extra;
  keep = Math.max(keep, Math.min(channels, Math.max(1, c.minChannels)), Math.ceil(channels * (1 - c.maxLayerRatio) - 1e-9));
  if (c.roundTo > 1 && keep < channels) keep = Math.min(channels, Math.ceil(keep / c.roundTo) * c.roundTo);
  return keep >= channels ? 0 : channels - keep + extra;
}

export interface Candidate {
  name: string;
  scores: Float64Array;
  /** Compaction keeps a carrier channel for this group (see constrainedPrune). */
  carrier?: boolean;
}

export interface Selection {
  /** 1 = removed, per candidate. */
  removed: Map<string, Uint8Array>;
  /** Highest score selected by the ranking (before constraints): global, or per candidate. */
  threshold: number | null;
  thresholds: Map<string, number | null>;
  /** Units (channels or kernels) the ranking could remove, and how many it removed. */
  units: number;
  removedUnits: number;
}

/** Candidate indices sorted by ascending score; ties by index (deterministic). */
function ascending(scores: Float64Array): Uint32Array {
  return Uint32Array.from(scores.keys()).sort((a, b) => scores[a] - scores[b] || a - b);
}

function take(scores: Float64Array, order: Uint32Array, count: number): { mask: Uint8Array; threshold: number | null } {
  const mask = new Uint8Array(scores.length);
  for (let i = 0; i < count; i++) mask[order[i]] = 1;
  return { mask, threshold: count ? scores[order[count - 1]] : null };
}

/**
 * Removes `ratio` of all candidates' units. Global scope: one ranking over every unit; the number
 * taken from the ranking grows (binary search) until the constrained total reaches the target.
 * Layer scope: `ratio` of each candidate. `constraints` = undefined for kernel-level selection.
 */
export function select(candidates: Candidate[], ratio: number, scope: 'global' | 'layer', constraints?: SelectConstraints): Selection {
  const units = candidates.reduce((s, c) => s + c.scores.length, 0);
  const orders = candidates.map((c) => ascending(c.scores));
  const apply = (c: Candidate, wanted: number) => (constraints ? constrainedPrune(c.scores.length, wanted, constraints, c.carrier) : wanted);
  const removed = new Map<string, Uint8Array>();
  const thresholds = new Map<string, number | null>();
  let removedUnits = 0;
  let threshold: number | null = null;

  if (scope === 'layer') {
    candidates.forEach((c, i) => {
      const n = apply(c, Math.round(ratio * c.scores.length));
      const t = take(c.scores, orders[i], n);
      removed.set(c.name, t.mask);
      thresholds.set(c.name, t.threshold);
      removedUnits += n;
    });
    return { removed, threshold: null, thresholds, units, removedUnits };
  }

  // Global: all units in one ascending order (ties by candidate, then index).
  const owner = new Uint32Array(units);
  const index = new Uint32Array(units);
  const score = new Float64Array(units);
  let u = 0;
  candidates.forEach((c, ci) => {
    for (let i = 0; i < c.scores.length; i++, u++) [owner[u], index[u], score[u]] = [ci, i, c.scores[i]];
  });
  const all = Uint32Array.from(score.keys()).sort((a, b) => score[a] - score[b] || owner[a] - owner[b] || index[a] - index[b]);
  const target = Math.round(ratio * units);
  const wantedAt = (k: number): number[] => {
    const wanted = new Array<number>(candidates.length).fill(0);
    for (let i = 0; i < k; i++) wanted[owner[all[i]]]++;
    return wanted;
  };
  const total = (k: number) => wantedAt(k).reduce((s, w, ci) => s + apply(candidates[ci], w), 0);
  let lo = target;
  let hi = units;
  if (total(units) < target) lo = units;
  else {
    // Smallest k in [target, units] whose constrained total reaches the target (monotone in k).
    lo = Math.min(target, units);
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (total(mid) >= target) hi = mid;
      else lo = mid + 1;
    }
  }
  const wanted = wantedAt(lo);
  candidates.forEach((c, ci) => {
    const n = apply(c, wanted[ci]);
    const t = take(c.scores, orders[ci], n);
    removed.set(c.name, t.mask);
    thresholds.set(c.name, t.threshold);
    removedUnits += n;
  });
  threshold = lo > 0 ? score[all[lo - 1]] : null;
  return { removed, threshold, thresholds, units, removedUnits };
}
