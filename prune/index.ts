// prune(): L1-norm filter (or kernel) pruning of a torchvision maskrcnn_resnet50_fpn (v1) state
// dict, in the browser or Node. The L1 norms of every filter/kernel of every layer come from one
// GPU pass (engine/kernels/l1Norms.ts); ranking, the channel plan, masking and compaction run on
// the CPU over the raw tensors; the result is a safetensors file with the input's key names and
// tensor kinds (FrozenBN tensors stay BN tensors, sliced) that the engine and torchvision load
// as a narrower model, plus a report (per-layer channels, parameters, compression, GMACs).

import { GpuContext } from '../engine/gpu.ts';
import { l1Norms } from '../engine/kernels/l1Norms.ts';
import { canonicalKeyName, canonicalizeKeys, loadMaskRCNNWeights, parseMaskRCNNMeta } from '../weights-loader/maskrcnn.ts';
import type { SafetensorsFile, Tensor } from '../weights-loader/safetensors.ts';
import { applyMask, compactTensors, emptiedChannels, type PrunePlan } from './compact.ts';
import { buildPruneGraph, feedsPaddedConv, namePattern, type PruneGraph } from './graph.ts';
import { resolvePruneOptions, type PruneOptions, type ResolvedPruneOptions } from './options.ts';
import { bnScale, layerSegments, normalizeScores, reduceGroup, select, type Selection } from './rank.ts';
import { buildReport, type PruneReport } from './summary.ts';
import { calibrate } from './calibration.ts';
import { resolveCalibration, type CalibrationOptions } from './calibrationOptions.ts';

export type { PruneOptions, ResolvedPruneOptions } from './options.ts';
export { PruneOptionsError, resolvePruneOptions } from './options.ts';
export type { PruneReport } from './summary.ts';
export { formatReport } from './summary.ts';
export { buildPruneGraph, type PruneGraph } from './graph.ts';
export { CalibrationError, CALIBRATION_MODES, type CalibrationImage, type CalibrationMode, type CalibrationOptions } from './calibrationOptions.ts';
export type { CalibrationReport } from './calibration.ts';

export interface PruneResult {
  file: SafetensorsFile;
  report: PruneReport;
}

/** Which groups may be pruned under the coupled policy and include/exclude patterns. */
export function prunableGroups(graph: PruneGraph, o: ResolvedPruneOptions): string[] {
  const include = o.include.map(namePattern);
  const exclude = o.exclude.map(namePattern);
  return [...graph.groups.values()]
    .filter((g) => !(g.coupled && o.coupled === 'leave'))
    .filter((g) => g.producers.every((p) => (!include.length || include.some((r) => r.test(p))) && !exclude.some((r) => r.test(p))))
    .map((g) => g.name);
}

/** L1 norms of every filter (or kernel) of the given layers, in one GPU pass. */
export async function layerNorms(
  ctx: GpuContext,
  graph: PruneGraph,
  tensors: Map<string, Tensor>,
  layers: string[],
  granularity: 'filter' | 'kernel',
  maxChunkFloats?: number,
): Promise<Map<string, Float32Array>> {
  const segs = layers.map((n) => layerSegments(graph.layers.get(n)!, tensors.get(graph.layers.get(n)!.weightKey)!.data, granularity));
  const norms = await ctx.checked('L1 norms', () => l1Norms(ctx, segs, { maxChunkFloats }));
  return new Map(layers.map((n, i) => [n, norms[i]]));
}

/** The channel (or kernel) plan from L1 norms: pure CPU, deterministic. */
export function planPruning(
  graph: PruneGraph,
  tensors: Map<string, Tensor>,
  norms: Map<string, Float32Array>,
  groups: string[],
  o: ResolvedPruneOptions,
  eps: number,
): { plan: PrunePlan; selection: Selection; scores: Map<string, Float64Array> } {
  const score = (name: string) => {
    const l = graph.layers.get(name)!;
    const perNorm = o.granularity === 'filter' ? l.cin * l.kernel : l.kernel;
    return normalizeScores(norms.get(name)!, o.bnScale ? bnScale(l, tensors, eps) : new Float64Array(l.cout).fill(1), o.granularity === 'filter' ? 1 : l.cin, perNorm, o.normalize);
  };
  if (o.granularity === 'filter') {
    const candidates = groups.map((g) => ({
      name: g,
      scores: reduceGroup(graph.groups.get(g)!.producers.map(score), o.groupReduction),
      // The same plan in both modes, so that compact reproduces mask.
      carrier: o.compensation === 'carrier' && feedsPaddedConv(graph, graph.groups.get(g)!),
    }));
    const selection = select(candidates, o.ratio, o.scope, { minChannels: o.minChannels, roundTo: o.roundTo, maxLayerRatio: o.maxLayerRatio });
    return { plan: { channels: selection.removed }, selection, scores: new Map(candidates.map((c) => [c.name, c.scores])) };
  }
  const candidates = groups.flatMap((g) => graph.groups.get(g)!.producers).map((n) => ({ name: n, scores: score(n) }));
  const selection = select(candidates, o.ratio, o.scope);
  return { plan: { channels: new Map(), kernels: selection.removed }, selection, scores: new Map(candidates.map((c) => [c.name, c.scores])) };
}

/**
 * Prunes Mask R-CNN weights. `target`: the GpuContext or GPUDevice for the L1 norms and the
 * calibration (undefined: acquire one). The input is validated first (loadMaskRCNNWeights); the
 * output keeps its key names (legacy ones too) and metadata, plus a `pruning` metadata entry (and
 * `calibration` when `calibration` is given: prune/calibration.ts).
 */
export async function prune(
  target: GpuContext | GPUDevice | undefined,
  weights: SafetensorsFile,
  options: PruneOptions & { calibration?: CalibrationOptions },
): Promise<PruneResult> {
  const o = resolvePruneOptions(options);
  const calibration = options.calibration ? resolveCalibration(options.calibration) : undefined;
  loadMaskRCNNWeights(weights);
  const ctx = target instanceof GpuContext ? target : target ? GpuContext.fromDevice(target) : await GpuContext.create();
  try {
    return await pruneOn(ctx, weights, o, calibration);
  } finally {
    if (!target) ctx.device.destroy();
  }
}

async function pruneOn(ctx: GpuContext, weights: SafetensorsFile, o: ResolvedPruneOptions, calibration: ReturnType<typeof resolveCalibration> | undefined): Promise<PruneResult> {
  const tensors = canonicalizeKeys(weights.tensors);
  const numClasses = tensors.get('roi_heads.box_predictor.cls_score.weight')!.shape[0];
  const meta = parseMaskRCNNMeta(weights.metadata, numClasses);
  const graph = buildPruneGraph(tensors);
  const groups = prunableGroups(graph, o);
  const layers = groups.flatMap((g) => graph.groups.get(g)!.producers);
  const norms = await layerNorms(ctx, graph, tensors, layers, o.granularity, o.maxChunkFloats);
  const { plan, selection } = planPruning(graph, tensors, norms, groups, o, meta.eps);

  const masked = applyMask(graph, tensors, plan);
  let channels = plan.channels;
  // Kernel granularity removes (compact) or reports (mask) the channels it emptied completely.
  if (o.granularity === 'kernel') channels = emptiedChannels(graph, masked, groups, o, (g) => o.compensation === 'carrier' && feedsPaddedConv(graph, g));
  let result = masked;
  const kept = new Map([...graph.groups.values()].map((g) => [g.name, g.channels - (channels.get(g.name)?.reduce((a, b) => a + b, 0) ?? 0)]));
  let carriers = new Map<string, number>();
  let keptLists = new Map<string, number[]>();
  if (o.mode === 'compact') {
    const c = compactTensors(graph, masked, channels, meta.eps, o.compensation, o);
    result = c.tensors;
    carriers = c.carriers;
    keptLists = c.kept;
    for (const [g, list] of c.kept) kept.set(g, list.length);
  }

  const report = buildReport({ graph, before: tensors, after: result, kept, carriers, groups, selection, options: o, meta });
  if (calibration) {
    const refittable = o.mode === 'compact' && o.granularity === 'filter';
    const c = await calibrate(ctx, { pruned: result, dense: tensors, meta, metadata: weights.metadata, kept: refittable ? keptLists : undefined }, calibration);
    result = c.tensors;
    report.calibration = c.report;
  }
  // Back to the input's own key names (a legacy file stays legacy).
  const names = new Map([...weights.tensors.keys()].map((k) => [canonicalKeyName(k), k]));
  const out = new Map<string, Tensor>();
  for (const [k, t] of result) out.set(names.get(k) ?? k, t);
  const metadata: Record<string, string> = { ...weights.metadata, pruning: JSON.stringify(report.summary) };
  if (report.calibration) metadata.calibration = JSON.stringify(report.calibration);
  return { file: { metadata, tensors: out }, report };
}
