// Mask R-CNN weights metadata (`__metadata__` of a safetensors file: classes, eps, min/max size,
// normalisation) and the loader's error type. eps is not part of a state dict: torchvision's
// FrozenBatchNorm2d default is 1e-5, but its COCO_V1 builder calls overwrite_eps(model, 0.0).

export class WeightsError extends Error {
  constructor(
    message: string,
    readonly key?: string,
  ) {
    super(message);
    this.name = 'WeightsError';
  }
}

export interface MaskRCNNMeta {
  classes: string[];
  numClasses: number;
  eps: number;
  minSize: number;
  maxSize: number;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

/** torchvision models/_meta.py _COCO_CATEGORIES (index 0 is the background). */
export const COCO_CLASSES: readonly string[] = [
  '__background__', 'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
  'traffic light', 'fire hydrant', 'N/A', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse',
  'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'N/A', 'backpack', 'umbrella', 'N/A', 'N/A', 'handbag',
  'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove',
  'skateboard', 'surfboard', 'tennis racket', 'bottle', 'N/A', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl',
  'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
  'couch', 'potted plant', 'bed', 'N/A', 'dining table', 'N/A', 'N/A', 'toilet', 'N/A', 'tv', 'laptop', 'mouse',
  'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'N/A', 'book', 'clock',
  'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
];

function metaNumber(md: Record<string, string>, key: string, fallback: number, valid: (x: number) => boolean, want: string): number {
  const s = md[key];
  if (s === undefined) return fallback;
  const x = s.trim() === '' ? NaN : Number(s);
  if (!valid(x)) throw new WeightsError(`metadata '${key}' is ${JSON.stringify(s)}: expected ${want}`, '__metadata__');
  return x;
}

function metaJsonArray(md: Record<string, string>, key: string, want: string, valid: (v: unknown[]) => boolean): unknown[] | undefined {
  const s = md[key];
  if (s === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    v = undefined;
  }
  if (!Array.isArray(v) || !valid(v)) throw new WeightsError(`metadata '${key}' is ${JSON.stringify(s.slice(0, 120))}: expected ${want}`, '__metadata__');
  return v;
}

const isTriple = (v: unknown[], positive: boolean) => v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0));

/** Reads the optional `__metadata__` fields; `numClasses` comes from the tensors. */
export function parseMaskRCNNMeta(md: Record<string, string>, numClasses: number): MaskRCNNMeta {
  const classes = metaJsonArray(md, 'classes', 'a JSON array of class names', (v) => v.every((x) => typeof x === 'string')) as string[] | undefined;
  if (classes && classes.length !== numClasses) {
    throw new WeightsError(
      `metadata 'classes' names ${classes.length} classes but the box predictor ('roi_heads.box_predictor.cls_score.weight') has ${numClasses} (index 0 is the background)`,
      'roi_heads.box_predictor.cls_score.weight',
    );
  }
  const positiveInt = (x: number) => Number.isSafeInteger(x) && x > 0;
  const minSize = metaNumber(md, 'min_size', 800, positiveInt, 'a positive integer');
  const maxSize = metaNumber(md, 'max_size', 1333, positiveInt, 'a positive integer');
  if (maxSize < minSize) throw new WeightsError(`metadata max_size ${maxSize} is smaller than min_size ${minSize}`, '__metadata__');
  const mean = metaJsonArray(md, 'image_mean', 'a JSON array of 3 numbers', (v) => isTriple(v, false)) as [number, number, number] | undefined;
  const std = metaJsonArray(md, 'image_std', 'a JSON array of 3 positive numbers', (v) => isTriple(v, true)) as [number, number, number] | undefined;
  return {
    classes: classes ?? (numClasses === COCO_CLASSES.length ? [...COCO_CLASSES] : Array.from({ length: numClasses }, (_, i) => `class_${i}`)),
    numClasses,
    eps: metaEps(md),
    minSize,
    maxSize,
    imageMean: mean ?? [0.485, 0.456, 0.406],
    imageStd: std ?? [0.229, 0.224, 0.225],
  };
}

// eps is not in a state dict. torchvision's FrozenBatchNorm2d default is 1e-5, but the COCO_V1
// builder calls overwrite_eps(model, 0.0), so an exporter of those weights must record "0".
export function metaEps(md: Record<string, string>): number {
  return metaNumber(md, 'eps', 1e-5, (x) => Number.isFinite(x) && x >= 0, 'a non-negative number ("0" for torchvision\'s COCO weights, "1e-5" for its default)');
}
