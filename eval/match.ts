// Comparing detections: the one box IoU of the project (COCO evaluation, benchmarks, tests) and the
// gate that decides whether two lists of detections are the same, shared by the benchmark scripts
// (bench/match.ts, bench/prune.ts) and the tests (golden tests against torchvision, the demo page
// against the Node engine). Browser-safe (no Node imports).
//
// compareDetections pairs the lists in order (rank for rank, as both come sorted by score) and
// reports the worst box IoU, |score difference| and mask IoU it saw; a DetectionGate names the
// limits. Labels and the count must be equal. Two empty masks count as mask IoU 1.

import { rleArea, rleIou, type RleMask } from '../engine/rle.ts';

export interface DetectionLike {
  box: [number, number, number, number];
  label: number;
  score: number;
  mask: RleMask;
}

/**
 * Intersection over union of two boxes, [x1, y1, x2, y2] by default, or COCO's [x, y, w, h] (the
 * arithmetic of pycocotools' bbIou, no +1). Boxes without a positive-area overlap have IoU 0, except
 * that in 'xyxy' (comparing two runs) identical boxes are 1 even when degenerate; in 'xywh', as in
 * pycocotools, a degenerate box never matches.
 */
export function boxIou(a: ArrayLike<number>, b: ArrayLike<number>, format: 'xyxy' | 'xywh' = 'xyxy'): number {
  const wh = format === 'xywh';
  const iw = Math.min(wh ? a[0] + a[2] : a[2], wh ? b[0] + b[2] : b[2]) - Math.max(a[0], b[0]);
  const ih = Math.min(wh ? a[1] + a[3] : a[3], wh ? b[1] + b[3] : b[3]) - Math.max(a[1], b[1]);
  if (iw <= 0 || ih <= 0) return !wh && a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3] ? 1 : 0;
  const inter = iw * ih;
  const areaA = wh ? a[2] * a[3] : (a[2] - a[0]) * (a[3] - a[1]);
  const areaB = wh ? b[2] * b[3] : (b[2] - b[0]) * (b[3] - b[1]);
  return inter / (areaA + areaB - inter);
}

/** Mask IoU where two empty masks are the same mask (IoU 1). */
export function maskIou(a: RleMask, b: RleMask): number {
  return rleArea(a) === 0 && rleArea(b) === 0 && a.size[0] === b.size[0] && a.size[1] === b.size[1] ? 1 : rleIou(a, b);
}

/** Limits for detections paired in order: box IoU >= minBoxIou, |score difference| <= maxScoreError, mask IoU >= minMaskIou. */
export interface DetectionGate {
  name: string;
  minBoxIou: number;
  maxScoreError: number;
  minMaskIou: number;
}

/**
 * The same model on two backends or in two forms (the page vs the Node engine, a compacted pruned
 * model vs the same pruning in mask mode, the stage-timing A/B): only float32 summation order and
 * fused multiply-adds differ. Used by the benchmarks before they time anything and by the demo test.
 */
export const SAME_DETECTIONS: DetectionGate = { name: 'same detections', minBoxIou: 0.99, maxScoreError: 1e-3, minMaskIou: 0.98 };
/** Bit-for-bit the same boxes, scores, labels and masks: a run repeated on one device (soak, determinism). */
export const IDENTICAL_DETECTIONS: DetectionGate = { name: 'identical detections', minBoxIou: 1, maxScoreError: 0, minMaskIou: 1 };

export interface DetectionComparison {
  ok: boolean;
  gate: DetectionGate;
  count: number;
  /** 1 / 0 / 1 when there are no pairs. */
  worstBoxIou: number;
  worstScoreError: number;
  worstMaskIou: number;
  /** What breaks the gate, one entry per offending detection (or the count). */
  problems: string[];
  /** One line: the worst values and the gate, then the first problems. */
  report: string;
}

/** Pairs `got` and `want` in order and checks every pair against `gate`. */
export function compareDetections(got: readonly DetectionLike[], want: readonly DetectionLike[], gate: DetectionGate = SAME_DETECTIONS, what = 'detections'): DetectionComparison {
  const problems: string[] = [];
  if (got.length !== want.length) problems.push(`${got.length} detections, expected ${want.length}`);
  let worstBoxIou = 1;
  let worstScoreError = 0;
  let worstMaskIou = 1;
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) {
    const [g, w] = [got[i], want[i]];
    const box = boxIou(g.box, w.box);
    const score = Math.abs(g.score - w.score);
    const mask = g.mask.size[0] === w.mask.size[0] && g.mask.size[1] === w.mask.size[1] ? maskIou(g.mask, w.mask) : 0;
    worstBoxIou = Math.min(worstBoxIou, box);
    worstScoreError = Math.max(worstScoreError, score);
    worstMaskIou = Math.min(worstMaskIou, mask);
    const bad: string[] = [];
    if (g.label !== w.label) bad.push(`label ${g.label} vs ${w.label}`);
    if (!(box >= gate.minBoxIou)) bad.push(`box [${g.box.map((v) => v.toFixed(2))}] vs [${w.box.map((v) => v.toFixed(2))}] (IoU ${box.toFixed(6)})`);
    if (!(score <= gate.maxScoreError)) bad.push(`score ${g.score} vs ${w.score}`);
    if (!(mask >= gate.minMaskIou)) bad.push(`mask IoU ${mask.toFixed(6)}${mask === 0 && g.mask.size.join() !== w.mask.size.join() ? ` (size ${g.mask.size.join('x')} vs ${w.mask.size.join('x')})` : ''}`);
    if (bad.length) problems.push(`detection ${i}: ${bad.join(', ')}`);
  }
  const report =
    `${what}: ${got.length} (expected ${want.length}), worst box IoU ${worstBoxIou.toFixed(6)}, worst |score error| ${worstScoreError.toExponential(2)}, ` +
    `worst mask IoU ${worstMaskIou.toFixed(6)} (gate ${gate.name}: box IoU >= ${gate.minBoxIou}, |score error| <= ${gate.maxScoreError}, mask IoU >= ${gate.minMaskIou})` +
    (problems.length ? `; ${problems.length} problems, first: ${problems.slice(0, 3).join('; ')}` : '');
  return { ok: problems.length === 0, gate, count: n, worstBoxIou, worstScoreError, worstMaskIou, problems, report };
}

/** Undefined when `a` and `b` are the same detections under `gate`; otherwise what differs. */
export function sameDetections(a: readonly DetectionLike[], b: readonly DetectionLike[], gate: DetectionGate = SAME_DETECTIONS): string | undefined {
  const c = compareDetections(a, b, gate);
  return c.ok ? undefined : c.problems.slice(0, 3).join('; ') + (c.problems.length > 3 ? ` (${c.problems.length} in all)` : '');
}
