// The pruning report: what was asked, what was removed (channels, kernels, parameters), the
// compression rate (original / remaining non-zero parameters) next to the channel ratio (a
// channel ratio p removes about 1 - (1 - p)^2 of a conv's weights when both its inputs and
// outputs shrink, so the two differ), GMACs before/after, per group and per layer.

import type { MaskRCNNMeta } from '../weights-loader/maskrcnn.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';
import type { PruneGraph } from './graph.ts';
import type { ResolvedPruneOptions } from './options.ts';
import type { Selection } from './rank.ts';
import type { CalibrationReport } from './calibration.ts';
import { countModel, defaultInputSize, giga, type PartCounts } from './report.ts';

export interface PruneReport {
  summary: {
    options: Omit<ResolvedPruneOptions, 'maxChunkFloats'>;
    /** Highest (normalised) score the global ranking selected; null for layer scope. */
    threshold: number | null;
    channels: { prunable: number; removed: number; ratio: number };
    kernels?: { prunable: number; zeroed: number; ratio: number; channelsEmptied: number };
    params: { before: number; after: number; nonzeroBefore: number; nonzeroAfter: number; removedRatio: number; compressionRate: number };
    bnValues: { before: number; after: number };
    gmacs: { inputSize: [number, number]; rois: number; detections: number; before: PartCounts; after: PartCounts; effectiveAfter: PartCounts; ratio: number };
  };
  groups: Array<{ name: string; coupled: boolean; removal: 'constant' | 'zero'; prunable: boolean; kept: number; total: number; carrier: boolean; threshold: number | null }>;
  layers: Array<{ name: string; out: [number, number]; in: [number, number]; params: [number, number]; nonzeroParams: number; gmacs: [number, number] }>;
  notes: string[];
  /** Present when the pruned weights were calibrated on images (prune/calibration.ts). */
  calibration?: CalibrationReport;
}

export interface ReportInput {
  graph: PruneGraph;
  before: Map<string, Tensor>;
  after: Map<string, Tensor>;
  /** Channels each group keeps (compact: carriers included; mask: the ones not zeroed). */
  kept: Map<string, number>;
  /** Groups whose compaction kept a carrier channel. */
  carriers: Map<string, number>;
  groups: string[];
  selection: Selection;
  options: ResolvedPruneOptions;
  meta: MaskRCNNMeta;
}

const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;

export function buildReport(r: ReportInput): PruneReport {
  const o = r.options;
  const { maxChunkFloats: _, ...options } = o;
  const inputSize = o.inputSize ?? defaultInputSize(r.meta.minSize, r.meta.maxSize);
  const settings = { inputSize, rois: o.rois, detections: o.detections };
  const b = countModel(r.graph, r.before, settings);
  const a = countModel(r.graph, r.after, settings);
  const prunable = new Set(r.groups);
  const masked = o.mode === 'mask';
  const groups = [...r.graph.groups.values()].map((g) => {
    return {
      name: g.name,
      coupled: g.coupled,
      removal: g.removal,
      prunable: prunable.has(g.name),
      kept: r.kept.get(g.name)!,
      total: g.channels,
      carrier: r.carriers.has(g.name),
      threshold: o.granularity === 'filter' ? (r.selection.thresholds.get(g.name) ?? null) : null,
    };
  });
  const removedChannels = groups.reduce((s, g) => s + g.total - g.kept, 0);
  const prunableChannels = groups.filter((g) => g.prunable).reduce((s, g) => s + g.total, 0);
  const layers = r.graph.order.map((name) => {
    const l = r.graph.layers.get(name)!;
    const lb = b.layers.get(name)!;
    const la = a.layers.get(name)!;
    const outGroup = l.outGroup ? groups.find((g) => g.name === l.outGroup) : undefined;
    const inGroup = l.inGroup ? groups.find((g) => g.name === l.inGroup) : undefined;
    return {
      name,
      out: [outGroup ? outGroup.kept : l.cout, l.cout] as [number, number],
      in: [inGroup ? inGroup.kept : l.cin, l.cin] as [number, number],
      params: [lb.params, la.params] as [number, number],
      nonzeroParams: la.nonzeroParams,
      gmacs: [round(lb.macs / 1e9, 6), round(la.macs / 1e9, 6)] as [number, number],
    };
  });
  const params = {
    before: b.params,
    after: a.params,
    nonzeroBefore: b.nonzeroParams,
    nonzeroAfter: a.nonzeroParams,
    removedRatio: round(1 - a.nonzeroParams / b.nonzeroParams),
    compressionRate: round(b.nonzeroParams / a.nonzeroParams),
  };
  const channelRatio = prunableChannels ? removedChannels / prunableChannels : 0;
  const notes = [
    `${(100 * channelRatio).toFixed(1)} % of the prunable channels (${removedChannels} of ${prunableChannels}) removed ${(100 * params.removedRatio).toFixed(1)} % of the parameters ` +
      `(compression rate ${params.compressionRate.toFixed(3)}): a channel ratio p removes about 1 - (1 - p)^2 of a layer's weights when its inputs shrink too.`,
  ];
  let kernels: PruneReport['summary']['kernels'];
  if (o.granularity === 'kernel') {
    kernels = { prunable: r.selection.units, zeroed: r.selection.removedUnits, ratio: round(r.selection.removedUnits / Math.max(1, r.selection.units)), channelsEmptied: removedChannels };
    notes.push(
      `kernel granularity zeroes single kernels; only a channel whose every kernel was zeroed can be removed (${removedChannels} here${masked ? ', kept in mask mode' : ''}); min channels and round-to do not apply.`,
    );
  }
  if (masked) notes.push('mask mode: shapes unchanged, so the engine runs the dense GMACs; effectiveAfter counts only non-zero weights (a sparse kernel\'s work).');
  else if (removedChannels && o.compensation === 'none') {
    notes.push('compact mode, no compensation: removed channels\' constants (relu of the BN-folded bias) are dropped, so the compacted network differs from the masked one wherever such a constant was non-zero.');
  } else if (removedChannels && o.compensation === 'bias') {
    notes.push('compact mode, bias compensation: each removed channel\'s constant (relu of its BN-folded bias) is folded into its consumers\' biases; exact except where a 3x3 consumer\'s window covers the zero-padded border.');
  } else if (removedChannels) {
    notes.push(
      `compact mode: removed channels' constants (relu of the BN-folded bias) are folded into consumer biases where the consumer is 1x1, and carried by one constant channel in ${r.carriers.size} group(s) feeding a padded 3x3 conv (counted as kept), so compact reproduces mask exactly.`,
    );
  }
  if (o.coupled === 'leave') notes.push('coupled groups (ResNet stage outputs, FPN lateral and output channels) were left whole (coupled: leave).');
  return {
    summary: {
      options,
      threshold: o.granularity === 'filter' || o.scope === 'global' ? r.selection.threshold : null,
      channels: { prunable: prunableChannels, removed: removedChannels, ratio: round(channelRatio) },
      kernels,
      params,
      bnValues: { before: b.bnValues, after: a.bnValues },
      gmacs: {
        inputSize,
        rois: o.rois,
        detections: o.detections,
        before: giga(b.macs),
        after: giga(a.macs),
        effectiveAfter: giga(a.effectiveMacs),
        ratio: round(a.macs.total / b.macs.total),
      },
    },
    groups,
    layers,
    notes,
  };
}

/** A plain-text report for the CLI: the summary, then the groups that lost channels. */
export function formatReport(report: PruneReport): string {
  const s = report.summary;
  const o = s.options;
  const g = s.gmacs;
  const lines = [
    `pruning: ratio ${o.ratio}, ${o.scope} scope, ${o.granularity} granularity, ${o.mode} mode, normalize ${o.normalize}, coupled ${o.coupled}` +
      (o.roundTo > 1 ? `, round to ${o.roundTo}` : '') + (s.threshold !== null ? `, threshold ${s.threshold.toPrecision(5)}` : ''),
    `channels: ${s.channels.removed} of ${s.channels.prunable} prunable removed (${(100 * s.channels.ratio).toFixed(1)} %)` +
      (s.kernels ? `; kernels: ${s.kernels.zeroed} of ${s.kernels.prunable} zeroed (${(100 * s.kernels.ratio).toFixed(1)} %)` : ''),
    `parameters: ${s.params.before} -> ${s.params.after} stored, ${s.params.nonzeroAfter} non-zero (${(100 * s.params.removedRatio).toFixed(1)} % removed, compression rate ${s.params.compressionRate.toFixed(3)})`,
    `GMACs at ${g.inputSize[0]}x${g.inputSize[1]} (${g.rois} RoIs, ${g.detections} masks): ${g.before.total} -> ${g.after.total} run, ${g.effectiveAfter.total} non-zero (ratio ${g.ratio.toFixed(3)}); ` +
      `backbone ${g.before.backbone} -> ${g.after.backbone}, rpn ${g.before.rpn} -> ${g.after.rpn}, box head ${g.before.boxHead} -> ${g.after.boxHead}, mask head ${g.before.maskHead} -> ${g.after.maskHead}`,
  ];
  const changed = report.groups.filter((x) => x.kept < x.total);
  if (changed.length) {
    lines.push('', 'group'.padEnd(48) + 'kept/total');
    for (const x of changed) lines.push(`${x.name}${x.coupled ? ' (coupled)' : ''}`.padEnd(48) + `${x.kept}/${x.total}${x.carrier ? ' (1 carrier)' : ''}`);
  }
  const c = report.calibration;
  if (c) {
    lines.push(
      '',
      `calibration: ${c.mode} on ${c.images} image${c.images === 1 ? '' : 's'} in ${c.seconds.toFixed(1)} s (peak GPU memory ${(c.peakGpuBytes / 2 ** 20).toFixed(1)} MiB)` +
        (c.stats ? `; BatchNorm statistics of ${c.stats.layers} layers re-estimated in ${c.stats.seconds.toFixed(1)} s` : '') +
        (c.leastSquares ? `; ${c.leastSquares.layers.length} layers refitted by least squares on ${c.leastSquares.images} images in ${c.leastSquares.seconds.toFixed(1)} s` : ''),
    );
  }
  lines.push('', ...report.notes.map((n) => `note: ${n}`));
  return lines.join('\n');
}
