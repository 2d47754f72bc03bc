// Pruning options, their defaults and validation (errors name the option and the fix).

import type { GroupReduction, Normalize } from './rank.ts';

export interface PruneOptions {
  /** Fraction of the prunable channels (filter granularity) or kernels (kernel granularity) to remove, 0 <= ratio < 1. */
  ratio: number;
  /** 'global': one L1 threshold over every prunable filter (the study); 'layer': the same ratio in every layer. Default 'global'. */
  scope?: 'global' | 'layer';
  /** 'filter': whole output channels (default); 'kernel': single k x k kernels, zeroed (Li et al.'s "kernel-level"). */
  granularity?: 'filter' | 'kernel';
  /** 'compact': remove the channels (default); 'mask': zero them, shapes unchanged (what the study measured). */
  mode?: 'compact' | 'mask';
  /** Per-layer normalisation of the L1 norms before global ranking. Default 'none' (raw L1, the study and Li et al.). */
  normalize?: Normalize;
  /**
   * Residual- and FPN-coupled channel groups: 'prune' ranks each as one unit (shared indices in
   * every producer) or 'leave' them whole. Default 'leave' (Li et al.: only the free convs).
   */
  coupled?: 'prune' | 'leave';
  /**
   * How compaction carries the constant a removed channel leaves behind (relu of its BN-folded
   * bias): 'carrier' (default) keeps one constant channel in groups that feed a zero-padded conv,
   * exact everywhere; 'bias' folds it into the consumers' biases, exact only away from the padded
   * border; 'none' drops the constants (what pruning tools that ignore the BN bias do: the
   * compacted network differs from the masked one). The plan (and so the mask) takes the carrier
   * into account in both carrier modes.
   */
  compensation?: 'carrier' | 'bias' | 'none';
  /** How a coupled group's producers' scores combine. Default 'mean'. */
  groupReduction?: GroupReduction;
  /** Score filters by L1 x |BN scale| (the folded filter) instead of the raw conv weight. Default false. */
  bnScale?: boolean;
  /** Every pruned layer keeps at least this many channels. Default 1. */
  minChannels?: number;
  /** Kept channel counts are multiples of this (or the whole layer), so vector kernels stay fast. Default 1. */
  roundTo?: number;
  /** At most this fraction of one layer's channels is removed (Torch-Pruning's max_pruning_ratio). Default 1. */
  maxLayerRatio?: number;
  /** Only layers matching one of these ('*' glob or '/regex/') are pruned. Default: all. */
  include?: string[];
  /** Layers matching any of these are left whole (and with them their channel group). */
  exclude?: string[];
  /** Padded input [H, W] the report's GMACs are counted at. Default: a 3:2 image at the model's min_size. */
  inputSize?: [number, number];
  /** RoIs in the box head and detections in the mask head for the GMAC count. Default 1000 and 100. */
  rois?: number;
  detections?: number;
  /** Largest packed weight buffer for the L1 kernel, in floats (tests lower it). */
  maxChunkFloats?: number;
}

export type ResolvedPruneOptions = Required<Omit<PruneOptions, 'inputSize' | 'maxChunkFloats'>> & Pick<PruneOptions, 'inputSize' | 'maxChunkFloats'>;

export class PruneOptionsError extends Error {
  override name = 'PruneOptionsError';
}

function oneOf<T extends string>(name: string, value: T | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!allowed.includes(value)) throw new PruneOptionsError(`${name} is '${value}': use one of ${allowed.join(', ')}`);
  return value;
}

function integer(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) throw new PruneOptionsError(`${name} is ${value}: it must be an integer >= ${min}`);
  return value;
}

export function resolvePruneOptions(o: PruneOptions): ResolvedPruneOptions {
  if (typeof o?.ratio !== 'number' || !(o.ratio >= 0 && o.ratio < 1)) {
    throw new PruneOptionsError(`ratio is ${o?.ratio}: give the fraction to remove, 0 <= ratio < 1 (e.g. 0.4 for 40 %)`);
  }
  const maxLayerRatio = o.maxLayerRatio ?? 1;
  if (!(maxLayerRatio > 0 && maxLayerRatio <= 1)) throw new PruneOptionsError(`maxLayerRatio is ${o.maxLayerRatio}: it must be in (0, 1]`);
  for (const [name, list] of [['include', o.include], ['exclude', o.exclude]] as const) {
    if (list !== undefined && (!Array.isArray(list) || list.some((p) => typeof p !== 'string' || !p))) {
      throw new PruneOptionsError(`${name} must be a list of non-empty layer name patterns ('*' globs or '/regex/')`);
    }
  }
  if (o.inputSize && (o.inputSize.length !== 2 || o.inputSize.some((v) => !Number.isSafeInteger(v) || v < 32))) {
    throw new PruneOptionsError(`inputSize is ${JSON.stringify(o.inputSize)}: give [height, width] in pixels, each >= 32`);
  }
  return {
    ratio: o.ratio,
    scope: oneOf('scope', o.scope, ['global', 'layer'], 'global'),
    granularity: oneOf('granularity', o.granularity, ['filter', 'kernel'], 'filter'),
    mode: oneOf('mode', o.mode, ['compact', 'mask'], 'compact'),
    normalize: oneOf('normalize', o.normalize, ['none', 'mean', 'fanin'], 'none'),
    coupled: oneOf('coupled', o.coupled, ['prune', 'leave'], 'leave'),
    compensation: oneOf('compensation', o.compensation, ['carrier', 'bias', 'none'], 'carrier'),
    groupReduction: oneOf('groupReduction', o.groupReduction, ['mean', 'sum'], 'mean'),
    bnScale: !!o.bnScale,
    minChannels: integer('minChannels', o.minChannels, 1, 1),
    roundTo: integer('roundTo', o.roundTo, 1, 1),
    maxLayerRatio,
    include: o.include ?? [],
    exclude: o.exclude ?? [],
    rois: integer('rois', o.rois, 1000, 0),
    detections: integer('detections', o.detections, 100, 0),
    inputSize: o.inputSize ? [Math.ceil(o.inputSize[0] / 32) * 32, Math.ceil(o.inputSize[1] / 32) * 32] : undefined,
    maxChunkFloats: o.maxChunkFloats,
  };
}
