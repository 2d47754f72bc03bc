// CPU reference for engine/kernels/nms.ts: torchvision's nms (csrc/ops/cpu/nms_kernel.cpp) and
// batched_nms (ops/boxes.py, 0.14), written as those files are, with float32 arithmetic emulated
// by Math.fround after every operation (x / y rounded from a double is the correctly rounded
// float32 quotient: 53 >= 2 * 24 + 2) and `ovr > iou_threshold` compared in double, as the C++
// compares a float with a double.

const f = Math.fround;

/** IoU of kept box i and candidate j as nms_kernel.cpp computes it in float32, with its parts. */
export function iouRef(boxes: ArrayLike<number>, i: number, j: number): { inter: number; denom: number; ovr: number } {
  const [ix1, iy1, ix2, iy2] = [boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]];
  const [jx1, jy1, jx2, jy2] = [boxes[4 * j], boxes[4 * j + 1], boxes[4 * j + 2], boxes[4 * j + 3]];
  const iarea = f(f(ix2 - ix1) * f(iy2 - iy1));
  const jarea = f(f(jx2 - jx1) * f(jy2 - jy1));
  const w = Math.max(0, f(Math.min(ix2, jx2) - Math.max(ix1, jx1)));
  const h = Math.max(0, f(Math.min(iy2, jy2) - Math.max(iy1, jy1)));
  const inter = f(w * h);
  const denom = f(f(iarea + jarea) - inter);
  return { inter, denom, ovr: f(inter / denom) };
}

/** `ovr > iou_threshold`: a float32 against a double. */
export function iouAboveRef(boxes: ArrayLike<number>, i: number, j: number, iouThreshold: number): boolean {
  return iouRef(boxes, i, j).ovr > iouThreshold;
}

/** Stable descending argsort (ties: lower index first), as torch.sort(stable=True). */
function argsortDescending(scores: ArrayLike<number>, indices: number[]): number[] {
  return [...indices].sort((a, b) => (scores[a] !== scores[b] ? (scores[a] > scores[b] ? -1 : 1) : a - b));
}

/** torchvision.ops.nms on the boxes listed in `indices`; returns kept indices, by descending score. */
export function nmsRef(boxes: ArrayLike<number>, scores: ArrayLike<number>, indices: number[], iouThreshold: number): number[] {
  const order = argsortDescending(scores, indices);
  const suppressed = new Uint8Array(order.length);
  const keep: number[] = [];
  for (let a = 0; a < order.length; a++) {
    if (suppressed[a]) continue;
    keep.push(order[a]);
    for (let b = a + 1; b < order.length; b++) {
      if (!suppressed[b] && iouAboveRef(boxes, order[a], order[b], iouThreshold)) suppressed[b] = 1;
    }
  }
  return keep;
}

/** `_batched_nms_vanilla`: nms per group; the final merge is taken as a stable sort. */
export function batchedNmsVanillaRef(boxes: ArrayLike<number>, scores: ArrayLike<number>, groups: ArrayLike<number>, indices: number[], iouThreshold: number): number[] {
  const byGroup = new Map<number, number[]>();
  for (const i of indices) {
    const list = byGroup.get(groups[i]) ?? [];
    list.push(i);
    byGroup.set(groups[i], list);
  }
  const kept: number[] = [];
  for (const list of byGroup.values()) kept.push(...nmsRef(boxes, scores, list, iouThreshold));
  return argsortDescending(scores, kept);
}

/** `_batched_nms_coordinate_trick`: plain nms on boxes + group * (boxes.max() + 1), in float32. */
export function batchedNmsCoordinateTrickRef(boxes: ArrayLike<number>, scores: ArrayLike<number>, groups: ArrayLike<number>, indices: number[], iouThreshold: number): number[] {
  if (indices.length === 0) return [];
  let max = -Infinity;
  for (const i of indices) for (let c = 0; c < 4; c++) max = Math.max(max, boxes[4 * i + c]);
  const scale = f(max + 1);
  const shifted = new Float32Array(boxes.length);
  for (const i of indices) {
    const offset = f(f(groups[i]) * scale);
    for (let c = 0; c < 4; c++) shifted[4 * i + c] = f(boxes[4 * i + c] + offset);
  }
  return nmsRef(shifted, scores, indices, iouThreshold);
}

export interface PostNmsOptions {
  iouThreshold: number;
  maxKeep: number;
  /** Live candidates: positions < count with valid[i] != 0 (the boxes that reach batched_nms). */
  count?: number;
  valid?: ArrayLike<number>;
  /** Coordinate trick when at most this many boxes reach batched_nms (0: never). */
  coordinateTrickMaxCount?: number;
}

/** `batched_nms(boxes[live], scores[live], groups[live], thr)[:maxKeep]`, as candidate indices. */
export function postNmsRef(boxes: ArrayLike<number>, scores: ArrayLike<number>, groups: ArrayLike<number>, o: PostNmsOptions): number[] {
  const live: number[] = [];
  const count = Math.min(o.count ?? scores.length, scores.length);
  for (let i = 0; i < count; i++) if (!o.valid || o.valid[i] !== 0) live.push(i);
  const trick = live.length <= (o.coordinateTrickMaxCount ?? 0);
  const keep = trick
    ? batchedNmsCoordinateTrickRef(boxes, scores, groups, live, o.iouThreshold)
    : batchedNmsVanillaRef(boxes, scores, groups, live, o.iouThreshold);
  return keep.slice(0, o.maxKeep);
}
