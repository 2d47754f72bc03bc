// Output checks for the end-to-end benchmark, so that it never times a wrong model.
// matchReference: by default the rule of tools/compare_fullsize.py (greedy in the reference's
// score order: the unmatched detection of the same label with the highest box IoU > 0.99; pass
// when every reference detection with score >= 0.5 is matched with mask IoU > 0.98; lower scores
// of random weights hinge on decisions float32 rounding may flip, so they are reported, not
// failed). With options it also checks a compacted pruned model against the same pruning in mask
// mode at score threshold 0, where there are 100 detections but many near-ties.
// boxIou, sameDetections (the check of bench/prune.ts, bench/browser.ts, bench/peers.ts and the
// stage-timing A/B) and its gate live in eval/match.ts, shared with the tests; re-exported here.

import { rleIou } from '../engine/rle.ts';
import { boxIou, type DetectionLike } from '../eval/match.ts';

export { boxIou, compareDetections, sameDetections, SAME_DETECTIONS, type DetectionGate, type DetectionLike } from '../eval/match.ts';

export const PASS_SCORE = 0.5;
export const PASS_MASK_IOU = 0.98;
export const MATCH_BOX_IOU = 0.99;

export interface MatchReport {
  reference: number;
  got: number;
  matched: number;
  decisive: number;
  worstScoreError: number;
  worstBoxIou: number;
  worstMaskIou: number;
  /** Reference detections with score >= PASS_SCORE that are unmatched or whose mask differs. */
  failing: string[];
  passed: boolean;
}

export interface MatchRule {
  /** Reference detections at or above this score must match (default PASS_SCORE). */
  minScore?: number;
  /** Fraction of those that may fail anyway (near-tie decisions), default 0. */
  allowFailing?: number;
  /** Largest |score difference| of a matched pair, default unlimited. */
  maxScoreError?: number;
}

export function matchReference(reference: DetectionLike[], got: DetectionLike[], rule: MatchRule = {}): MatchReport {
  const { minScore = PASS_SCORE, allowFailing = 0, maxScoreError = Infinity } = rule;
  const used = new Array(got.length).fill(false);
  const order = reference.map((_, i) => i).sort((i, j) => reference[j].score - reference[i].score);
  const r: MatchReport = { reference: reference.length, got: got.length, matched: 0, decisive: 0, worstScoreError: 0, worstBoxIou: 1, worstMaskIou: 1, failing: [], passed: true };
  for (const i of order) {
    const want = reference[i];
    const decisive = want.score >= minScore;
    if (decisive) r.decisive++;
    let best = -1;
    let bestIou = MATCH_BOX_IOU;
    got.forEach((g, j) => {
      if (used[j] || g.label !== want.label) return;
      const iou = boxIou(want.box, g.box);
      if (iou > bestIou) [best, bestIou] = [j, iou];
    });
    if (best < 0) {
      if (decisive) r.failing.push(`#${i} (label ${want.label}, score ${want.score.toFixed(4)}) unmatched`);
      continue;
    }
    used[best] = true;
    r.matched++;
    const maskIou = rleIou(want.mask, got[best].mask);
    r.worstScoreError = Math.max(r.worstScoreError, Math.abs(want.score - got[best].score));
    r.worstBoxIou = Math.min(r.worstBoxIou, bestIou);
    r.worstMaskIou = Math.min(r.worstMaskIou, maskIou);
    if (decisive && !(maskIou > PASS_MASK_IOU)) r.failing.push(`#${i} (label ${want.label}, score ${want.score.toFixed(4)}) mask IoU ${maskIou.toFixed(4)}`);
  }
  r.passed = r.failing.length <= Math.floor(allowFailing * r.decisive) && r.worstScoreError <= maxScoreError;
  return r;
}

export function describeMatch(m: MatchReport): string {
  return (
    `${m.matched}/${m.reference} reference detections matched (${m.got} found; ${m.decisive} required, ${m.failing.length} of them failing), ` +
    `worst score error ${m.worstScoreError.toExponential(1)}, box IoU ${m.worstBoxIou.toFixed(5)}, mask IoU ${m.worstMaskIou.toFixed(4)}`
  );
}
