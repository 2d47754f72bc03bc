// Per-stage timing of one Mask R-CNN run. The plan marks where each stage's dispatches begin
// (Recorder.stage);
// with the 'timestamp-query' feature every stage becomes its own compute pass writing a GPU
// timestamp at its beginning and end (still one encoder and one submit, the resolved timestamps
// read back in the result's mapping); without it, profiling submits stage by stage and waits for
// each on the CPU.

export const STAGES = ['preprocess', 'backbone', 'fpn', 'rpn', 'boxHead', 'maskHead', 'paste'] as const;
export type StageName = (typeof STAGES)[number];
export type StagesMs = Record<StageName, number>;

/** Two timestamps (beginning, end of pass) per stage. */
export const TIMESTAMP_COUNT = 2 * STAGES.length;
export const TIMESTAMP_BYTES = 8 * TIMESTAMP_COUNT;

/**
 * Stage durations from the resolved timestamps (ns, [begin, end] per stage). Returns null unless
 * every stage ends after it begins and the stages begin in order (all zeros = never written):
 * some drivers write garbage, and a wrong profile is worse than none. A stage may begin before
 * the previous one ended (a GPU can overlap passes), so durations can sum to more than the span.
 */
export function stagesFromTimestamps(ts: BigUint64Array): StagesMs | null {
  if (ts[TIMESTAMP_COUNT - 1] === ts[0]) return null;
  for (let i = 0; i < STAGES.length; i++) {
    if (ts[2 * i + 1] < ts[2 * i]) return null;
    if (i > 0 && ts[2 * i] < ts[2 * i - 2]) return null;
  }
  return Object.fromEntries(STAGES.map((s, i) => [s, Number(ts[2 * i + 1] - ts[2 * i]) / 1e6])) as StagesMs;
}

/**
 * The coarsest power-of-two grid (ns, up to 2^20) that every stage duration sits on: 1 for
 * nanosecond timestamps. Dawn quantises timestamps by default (its 'timestamp_quantization'
 * toggle: 2^16 ns = 65.5 us) against timing attacks; Dawn in Node turns that off with the flag
 * `disable-dawn-features=timestamp_quantization`. Meaningful over several nonzero stages only.
 */
export function timestampGranularityNs(s: StagesMs): number {
  const ns = STAGES.map((k) => Math.round(s[k] * 1e6)).filter((v) => v > 0);
  if (!ns.length) return 1;
  let g = 1;
  while (g < 2 ** 20 && ns.every((v) => v % (g * 2) === 0)) g *= 2;
  return g;
}

export function sumStages(s: StagesMs): number {
  return STAGES.reduce((a, k) => a + s[k], 0);
}
