// COCO-style detection and instance-segmentation metrics, as pycocotools' COCOeval computes them
// for iscrowd-0 ground truth, area range "all" and maxDets 100, plus the mean mask IoU of matched
// instances that tools/eval_torchvision.py reports. Browser-safe (no Node imports).
//
// Per image and category the detections are taken in descending score order (stable) and each is
// matched to the unmatched ground truth with the highest IoU >= t (ties: the later one, as
// pycocotools' `<` comparison); per category the detections of all images are ranked by score
// (stable, image order), precision is made monotone and sampled at 101 recall points (0 past the
// last recall reached); AP averages over the categories that have ground truth; AP@[.5:.95] is the
// mean over t = 0.50, 0.55, ..., 0.95. Box IoU uses [x, y, w, h] (no +1); mask IoU is computed on
// the run lengths. The mean matched IoU is the mean mask IoU over the pairs matched at t = 0.5;
// recall50 the fraction of ground-truth instances so matched.

import { rleArea, rleIou, type RleMask } from '../engine/rle.ts';
import { boxIou } from './match.ts';

export interface CocoImage {
  id: number;
  file_name: string;
  width: number;
  height: number;
}

export interface CocoAnnotation {
  id?: number;
  image_id: number;
  category_id: number;
  /** [x, y, width, height]. */
  bbox: [number, number, number, number];
  /** Uncompressed ({counts: number[]}) or compressed ({counts: string}) COCO RLE. */
  segmentation: RleMask | { size: [number, number]; counts: string };
  iscrowd?: number;
}

export interface CocoDataset {
  images: CocoImage[];
  annotations: CocoAnnotation[];
  categories: { id: number; name: string }[];
}

export interface EvalDetection {
  imageId: number;
  categoryId: number;
  score: number;
  /** [x, y, width, height]. */
  bbox: [number, number, number, number];
  mask: RleMask;
}

export interface CocoMetrics {
  boxAP: number;
  boxAP50: number;
  boxAP75: number;
  maskAP: number;
  maskAP50: number;
  maskAP75: number;
  /** Mean mask IoU of the (detection, ground truth) pairs matched at IoU 0.5. */
  meanIoU: number;
  /** Fraction of ground-truth instances matched at mask IoU 0.5. */
  recall50: number;
  instances: number;
  detections: number;
  images: number;
}

// pycocotools' np.linspace(.5, 0.95, 10) and np.linspace(.0, 1.00, 101), bit for bit (numpy's
// arithmetic gives 0.8999999999999999, not 0.9; and i * 0.01, which is not i / 100 for 35, 41, ...).
export const IOU_THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95];
const RECALL_POINTS = Array.from({ length: 101 }, (_, i) => i * 0.01);
const MAX_DETS = 100;
// np.spacing(1): the gap between 1 and the next double.
const SPACING_1 = 2 ** -52;

export class CocoFormatError extends Error {
  override name = 'CocoFormatError';
}

/** Decodes pycocotools' compressed RLE string (rleFrString) into run lengths. */
export function decodeCompressedCounts(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= s.length) throw new CocoFormatError('compressed RLE string ends in the middle of a count');
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new CocoFormatError(`compressed RLE string has an invalid character '${s[p]}'`);
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

function toRle(seg: CocoAnnotation['segmentation'], where: string): RleMask {
  if (!seg || typeof seg !== 'object' || Array.isArray(seg)) {
    throw new CocoFormatError(`${where}: segmentation must be COCO RLE ({size, counts}); polygons are not supported — convert them to RLE first (pycocotools.mask.frPyObjects)`);
  }
  const size = seg.size;
  if (!Array.isArray(size) || size.length !== 2) throw new CocoFormatError(`${where}: RLE size must be [height, width]`);
  const counts = typeof seg.counts === 'string' ? decodeCompressedCounts(seg.counts) : seg.counts;
  if (!Array.isArray(counts) || counts.some((c) => !Number.isInteger(c) || c < 0)) {
    throw new CocoFormatError(`${where}: RLE counts must be non-negative integers (or a compressed RLE string)`);
  }
  const total = counts.reduce((a, b) => a + b, 0);
  if (total !== size[0] * size[1]) throw new CocoFormatError(`${where}: RLE counts sum to ${total}, but size ${size[0]}x${size[1]} has ${size[0] * size[1]} pixels`);
  return { size: [size[0], size[1]], counts };
}

function checkBox(b: unknown, where: string): [number, number, number, number] {
  if (!Array.isArray(b) || b.length !== 4 || b.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
    throw new CocoFormatError(`${where}: bbox must be [x, y, width, height] (4 finite numbers)`);
  }
  return b as [number, number, number, number];
}

/** Validates a COCO annotation file's content; errors name the entry and what is wrong. */
export function parseCocoDataset(json: unknown): CocoDataset {
  const d = json as CocoDataset;
  if (!d || typeof d !== 'object' || !Array.isArray(d.images) || !Array.isArray(d.annotations) || !Array.isArray(d.categories)) {
    throw new CocoFormatError('not a COCO annotation file: it needs "images", "annotations" and "categories" lists');
  }
  const ids = new Set<number>();
  for (const im of d.images) {
    if (!Number.isInteger(im?.id) || typeof im.file_name !== 'string' || !Number.isInteger(im.width) || !Number.isInteger(im.height)) {
      throw new CocoFormatError(`image entry ${JSON.stringify(im)?.slice(0, 120)} needs an integer id, file_name, width and height`);
    }
    if (ids.has(im.id)) throw new CocoFormatError(`image id ${im.id} appears twice`);
    ids.add(im.id);
  }
  const cats = new Set(d.categories.map((c) => c?.id));
  const images = new Map(d.images.map((im) => [im.id, im]));
  const annotations = d.annotations.map((a, i) => {
    const where = `annotation ${a?.id ?? `#${i}`}`;
    const im = images.get(a?.image_id);
    if (!im) throw new CocoFormatError(`${where}: image_id ${a?.image_id} is not in "images"`);
    if (!cats.has(a.category_id)) throw new CocoFormatError(`${where}: category_id ${a.category_id} is not in "categories"`);
    if (a.iscrowd) throw new CocoFormatError(`${where}: iscrowd annotations are not supported (pycocotools ignores matches to them); drop them or set iscrowd 0`);
    const segmentation = toRle(a.segmentation, where);
    if (segmentation.size[0] !== im.height || segmentation.size[1] !== im.width) {
      throw new CocoFormatError(`${where}: mask size ${segmentation.size.join('x')} differs from image ${im.id}'s ${im.height}x${im.width}`);
    }
    return { ...a, bbox: checkBox(a.bbox, where), segmentation };
  });
  return { images: d.images, annotations, categories: d.categories };
}

/** pycocotools evaluateImg's greedy matching: matched[t][d] = index of the ground truth or -1. */
export function matchDetections(ious: number[][], numGt: number, thresholds = IOU_THRESHOLDS): Int32Array[] {
  return thresholds.map((t) => {
    const matched = new Int32Array(ious.length).fill(-1);
    const taken = new Uint8Array(numGt);
    for (let d = 0; d < ious.length; d++) {
      let best = Math.min(t, 1 - 1e-10);
      let m = -1;
      for (let g = 0; g < numGt; g++) {
        if (taken[g] || ious[d][g] < best) continue;
        best = ious[d][g];
        m = g;
      }
      if (m >= 0) {
        taken[m] = 1;
        matched[d] = m;
      }
    }
    return matched;
  });
}

/** pycocotools accumulate for one category and threshold: 101-point interpolated precision. */
export function averagePrecision(scores: number[], tp: boolean[], numGt: number): number {
  if (numGt === 0 || scores.length === 0) return 0;
  const order = scores.map((_, i) => i).sort((a, b) => scores[b] - scores[a]); // stable
  const rc: number[] = [];
  const pr: number[] = [];
  let t = 0;
  let f = 0;
  for (const i of order) {
    if (tp[i]) t++;
    else f++;
    rc.push(t / numGt);
    pr.push(t / (t + f + SPACING_1));
  }
  for (let i = pr.length - 1; i > 0; i--) if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
  let sum = 0;
  let i = 0;
  for (const r of RECALL_POINTS) {
    while (i < rc.length && rc[i] < r) i++; // np.searchsorted(rc, r, side='left')
    if (i < pr.length) sum += pr[i];
  }
  return sum / RECALL_POINTS.length;
}

/** Box and mask AP (@[.5:.95], 50, 75), mean matched mask IoU and recall at 0.5. */
export function evaluateCoco(dataset: CocoDataset, detections: EvalDetection[]): CocoMetrics {
  const T = IOU_THRESHOLDS.length;
  const cats = dataset.categories.map((c) => c.id);
  const key = (image: number, cat: number) => `${image}/${cat}`;
  const gts = new Map<string, CocoAnnotation[]>();
  for (const a of dataset.annotations) {
    const k = key(a.image_id, a.category_id);
    if (!gts.has(k)) gts.set(k, []);
    gts.get(k)!.push(a);
  }
  const dts = new Map<string, EvalDetection[]>();
  const imageIds = new Set(dataset.images.map((im) => im.id));
  for (const d of detections) {
    if (!imageIds.has(d.imageId)) throw new CocoFormatError(`a detection names image ${d.imageId}, which is not in the dataset`);
    const k = key(d.imageId, d.categoryId);
    if (!dts.has(k)) dts.set(k, []);
    dts.get(k)!.push(d);
  }
  type Acc = { scores: number[]; tp: boolean[][] };
  const acc = { bbox: new Map<number, Acc>(), segm: new Map<number, Acc>() };
  const numGt = new Map<number, number>(cats.map((c) => [c, 0]));
  const matchedIous: number[] = [];
  for (const image of dataset.images) {
    for (const c of cats) {
      const g = gts.get(key(image.id, c)) ?? [];
      const d = (dts.get(key(image.id, c)) ?? []).slice().sort((a, b) => b.score - a.score).slice(0, MAX_DETS);
      numGt.set(c, numGt.get(c)! + g.length);
      if (!g.length && !d.length) continue;
      const gMasks = g.map((a) => a.segmentation as RleMask);
      const ious = {
        bbox: d.map((x) => g.map((a) => boxIou(x.bbox, a.bbox, 'xywh'))),
        segm: d.map((x) => gMasks.map((m) => rleIou(x.mask, m))),
      };
      for (const kind of ['bbox', 'segm'] as const) {
        const matched = matchDetections(ious[kind], g.length);
        if (!acc[kind].has(c)) acc[kind].set(c, { scores: [], tp: Array.from({ length: T }, () => []) });
        const a = acc[kind].get(c)!;
        a.scores.push(...d.map((x) => x.score));
        matched.forEach((m, t) => a.tp[t].push(...Array.from(m, (v) => v >= 0)));
        if (kind === 'segm') matched[0].forEach((gi, di) => gi >= 0 && matchedIous.push(ious.segm[di][gi]));
      }
    }
  }
  const out = {} as CocoMetrics;
  for (const kind of ['bbox', 'segm'] as const) {
    const aps = cats
      .filter((c) => numGt.get(c)! > 0)
      .map((c) => {
        const a = acc[kind].get(c);
        return IOU_THRESHOLDS.map((_, t) => (a ? averagePrecision(a.scores, a.tp[t], numGt.get(c)!) : 0));
      });
    const mean = (f: (ap: number[]) => number) => (aps.length ? aps.reduce((s, ap) => s + f(ap), 0) / aps.length : 0);
    const prefix = kind === 'bbox' ? 'box' : 'mask';
    out[`${prefix}AP`] = mean((ap) => ap.reduce((s, v) => s + v, 0) / T);
    out[`${prefix}AP50`] = mean((ap) => ap[0]);
    out[`${prefix}AP75`] = mean((ap) => ap[5]);
  }
  const instances = dataset.annotations.length;
  out.meanIoU = matchedIous.length ? matchedIous.reduce((a, b) => a + b, 0) / matchedIous.length : 0;
  out.recall50 = instances ? matchedIous.length / instances : 0;
  out.instances = instances;
  out.detections = detections.length;
  out.images = dataset.images.length;
  return out;
}

export function formatMetrics(m: CocoMetrics): string {
  const f = (v: number) => v.toFixed(3);
  return (
    `mask AP ${f(m.maskAP)} AP50 ${f(m.maskAP50)} AP75 ${f(m.maskAP75)} | box AP ${f(m.boxAP)} AP50 ${f(m.boxAP50)} AP75 ${f(m.boxAP75)} | ` +
    `mean matched mask IoU ${f(m.meanIoU)} (recall@0.5 ${f(m.recall50)}, ${m.instances} instances, ${m.detections} detections, ${m.images} images)`
  );
}

/** Ground-truth area helper for reports. */
export function maskArea(rle: RleMask): number {
  return rleArea(rle);
}
