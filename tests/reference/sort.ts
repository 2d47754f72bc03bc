// CPU references for engine/kernels/sort.ts: torch.sort(scores, descending=True, stable=True)
// and torch.topk (sorted), on the live elements (position < count and valid), with the GPU's
// documented conventions: NaN sorts as -inf, -0 ties with +0, ties by value ascending (value =
// index unless values are given, which is exactly the stable sort).

export interface SortInput {
  keys: Float32Array;
  values?: Uint32Array;
  valid?: Uint32Array;
  count?: number;
}

export interface SortResult {
  /** Sorted scores as the GPU writes them: NaN -> -inf, -0 -> +0. */
  keys: Float32Array;
  values: Uint32Array;
}

/** The score as the sort orders it. */
export function sortScore(x: number): number {
  if (Number.isNaN(x)) return -Infinity;
  return x === 0 ? 0 : x;
}

export function sortDescendingRef(input: SortInput): SortResult {
  const { keys, values, valid } = input;
  const live = Math.min(input.count ?? keys.length, keys.length);
  const items: { score: number; value: number }[] = [];
  for (let i = 0; i < live; i++) {
    if (valid && valid[i] === 0) continue;
    items.push({ score: sortScore(keys[i]), value: values ? values[i] : i });
  }
  items.sort((a, b) => (a.score !== b.score ? (a.score > b.score ? -1 : 1) : a.value - b.value));
  return {
    keys: Float32Array.from(items, (e) => e.score),
    values: Uint32Array.from(items, (e) => e.value),
  };
}

export function topkRef(input: SortInput, k: number): SortResult {
  const all = sortDescendingRef(input);
  return { keys: all.keys.slice(0, k), values: all.values.slice(0, k) };
}
