// Inference options of Mask R-CNN, each with torchvision's default (maskrcnn_resnet50_fpn, eval).

export interface MaskRCNNOptions {
  /** Shorter side after resizing (torchvision min_size; default from the weights' metadata, else 800). */
  minSize?: number;
  /** Longer side cap (max_size; default from the metadata, else 1333). */
  maxSize?: number;
  /** Anchors kept per FPN level before NMS (rpn_pre_nms_top_n_test). */
  rpnPreNmsTopN?: number;
  /** Proposals kept after NMS (rpn_post_nms_top_n_test). */
  rpnPostNmsTopN?: number;
  rpnNmsThresh?: number;
  /** On sigmoid(objectness), compared with >=. */
  rpnScoreThresh?: number;
  /** remove_small_boxes in the RPN. */
  rpnMinSize?: number;
  /** Class score threshold, compared with > (box_score_thresh). */
  boxScoreThresh?: number;
  boxNmsThresh?: number;
  /** box_detections_per_img. */
  detectionsPerImage?: number;
  /** remove_small_boxes in postprocess_detections (hard-coded 1e-2 in torchvision). */
  boxMinSize?: number;
  /** Pasted mask probabilities above this are foreground. */
  maskThreshold?: number;
  /**
   * batched_nms: with at most this many candidates, torchvision 0.14 on the CPU offsets boxes by
   * class/level and runs one NMS (the "coordinate trick", which rounds IoU slightly differently);
   * above it, NMS per group. Default 1000 reproduces torchvision on the CPU; 0 = always per group.
   */
  nmsCoordinateTrickMax?: number;
  /**
   * Storage of the convolution weights (not a torchvision setting): 'f32' (default) or 'f16', which
   * halves their memory with f32 products and sums; needs the adapter feature 'shader-f16'.
   * Accuracy against f32 on the bundled model: bench/NOTES.md.
   */
  precision?: 'f32' | 'f16';
}

export type ResolvedOptions = Required<MaskRCNNOptions>;

export const TORCHVISION_DEFAULTS: Omit<ResolvedOptions, 'minSize' | 'maxSize' | 'precision'> = {
  rpnPreNmsTopN: 1000,
  rpnPostNmsTopN: 1000,
  rpnNmsThresh: 0.7,
  rpnScoreThresh: 0.0,
  rpnMinSize: 1e-3,
  boxScoreThresh: 0.05,
  boxNmsThresh: 0.5,
  detectionsPerImage: 100,
  boxMinSize: 1e-2,
  maskThreshold: 0.5,
  nmsCoordinateTrickMax: 1000,
};

export function resolveOptions(o: MaskRCNNOptions, meta: { minSize: number; maxSize: number }): ResolvedOptions {
  const r: ResolvedOptions = { minSize: meta.minSize, maxSize: meta.maxSize, precision: 'f32', ...TORCHVISION_DEFAULTS };
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined) continue;
    if (!(k in r)) throw new Error(`unknown Mask R-CNN option '${k}' (known: ${Object.keys(r).join(', ')})`);
    if (k === 'precision') {
      if (v !== 'f32' && v !== 'f16') throw new Error(`option precision must be 'f32' or 'f16', got ${v}`);
      r.precision = v;
      continue;
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`option ${k} must be a finite non-negative number, got ${v}`);
    (r as unknown as Record<string, number>)[k] = v;
  }
  for (const k of ['minSize', 'maxSize', 'rpnPreNmsTopN', 'rpnPostNmsTopN', 'detectionsPerImage'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 1) throw new Error(`option ${k} must be a positive integer, got ${r[k]}`);
  }
  return r;
}
