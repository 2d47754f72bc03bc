// SortDescending, TopK and GreedyNms against their CPU references (tests/reference/sort.ts,
// tests/reference/nms.ts): every index output must match exactly (same indices, order, count).
// Awkward inputs: sizes 1..200k that are not powers of two, ties, duplicates, +-inf, NaN, -0,
// subnormals, counts in GPU buffers smaller than n, valid flags, k > count, clustered boxes with
// many overlaps over many groups, identical and zero-area boxes, and IoUs one float32 ulp either
// side of the threshold. Prints the time of a 200k sort and of NMS over 5000 candidates.
// Every case runs twice: on the tuned kernels, and on the quick stand-ins a first run takes
// (engine/tiers.ts: a 64-element sort tile, TopK by a full sort past it, NMS with WG 32 that reads
// its kept boxes through storage), which must give the same indices.

import { GreedyNms, TORCHVISION_CPU_COORDINATE_TRICK_MAX, type NmsSpec } from '../engine/kernels/nms.ts';
import { SortDescending } from '../engine/kernels/sort.ts';
import { TopK } from '../engine/kernels/sortTopk.ts';
import type { GpuContext } from '../engine/gpu.ts';
import { Recorder } from '../engine/recorder.ts';
import { gpuSuite, type GpuSuite } from './harness.ts';
import { rng } from './random.ts';
import { iouRef, postNmsRef, type PostNmsOptions } from './reference/nms.ts';
import { sortDescendingRef, topkRef, type SortInput, type SortResult } from './reference/sort.ts';

const fr = Math.fround;

/** Registers `body` twice: on the tuned kernels (the shared context's tiers), and on the quick stand-ins. */
function bothTiers(suite: GpuSuite, name: string, body: (ctx: GpuContext) => Promise<unknown>): void {
  suite.test(name, async (ctx) => void (await body(ctx)));
  suite.test(`${name} [quick stand-ins]`, async (ctx) => {
    const before = ctx.kernelTiers;
    ctx.setKernelTiers('quick');
    try {
      await body(ctx);
    } finally {
      ctx.setKernelTiers(before);
    }
  });
}

/**
 * Boxes around `clusters` centres in an 1088x800 image (heavy overlaps), some snapped to whole
 * pixels (exact duplicates), clipped like clip_boxes_to_image; scores on a 1/256 grid (ties).
 */
function clusteredBoxes(seed: number, n: number, o: { groups: number; clusters: number; groupBase?: number }) {
  const r = rng(seed);
  const [W, H] = [1088, 800];
  const centres = Array.from({ length: o.clusters }, () => [r() * W, r() * H, 16 * 2 ** (r() * 4.5), 16 * 2 ** (r() * 4.5)]);
  const boxes = new Float32Array(4 * n);
  const scores = new Float32Array(n);
  const groups = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const [cx, cy, w, h] = centres[Math.floor(r() * o.clusters)];
    const jitter = () => (r() - 0.5) * 0.3;
    let box = [cx - w * (0.5 + jitter()) + w * jitter(), cy - h * (0.5 + jitter()) + h * jitter(), 0, 0];
    box[2] = box[0] + w * (1 + jitter());
    box[3] = box[1] + h * (1 + jitter());
    if (r() < 0.3) box = box.map(Math.round);
    boxes.set([Math.min(Math.max(box[0], 0), W), Math.min(Math.max(box[1], 0), H), Math.min(Math.max(box[2], 0), W), Math.min(Math.max(box[3], 0), H)], 4 * i);
    scores[i] = Math.floor(r() * 256) / 256;
    groups[i] = (o.groupBase ?? 0) + Math.floor(r() * o.groups);
  }
  return { boxes, scores, groups };
}

const bitsOf = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0];
const floatOf = (bits: number): number => new Float32Array(Uint32Array.of(bits).buffer)[0];

/**
 * Pairs (A, B), A scored above B, where B's right edge is the float32 (found by bisection over
 * its bit pattern, then moved -2..+1 ulp) at which torch's float32 IoU crosses the threshold:
 * B is kept or suppressed by a one-ulp difference in the IoU. Each pair has its own group; with
 * `trick`, groups are 1..90 and the crossing is found on the boxes shifted as batched_nms's
 * coordinate trick shifts them (a last box in group 0 fixes boxes.max() at 1200).
 */
function nearThresholdPairs(seed: number, pairs: number, threshold: number, trick = false) {
  const r = rng(seed);
  const t32 = fr(threshold) > threshold ? floatOf(bitsOf(threshold) - 1) : fr(threshold);
  const mid = (t32 + floatOf(bitsOf(t32) + 1)) / 2;
  const boxes = new Float32Array(8 * pairs + (trick ? 4 : 0));
  const groups = Uint32Array.from({ length: boxes.length / 4 }, (_, i) => (trick ? (i >> 1 === pairs ? 0 : 1 + ((i >> 1) % 90)) : i >> 1));
  const tally = { below: 0, atT: 0, above: 0, exactPath: 0 };
  for (let p = 0; p < pairs; p++) {
    const offset = trick ? fr(groups[2 * p] * fr(1200 + 1)) : 0;
    const pair = new Float32Array(8);
    const shifted = new Float32Array(8);
    const iouWith = (x2Bits: number) => {
      pair[6] = floatOf(x2Bits);
      for (let c = 0; c < 8; c++) shifted[c] = fr(pair[c] + offset);
      return iouRef(shifted, 0, 1);
    };
    const [x0, y0, wa, ha] = [fr(r() * 800), fr(r() * 600), fr(10 + r() * 300), fr(10 + r() * 300)];
    const [dx, dy] = [fr(r() * 0.05 * wa), fr((r() - 0.5) * 0.1 * ha)];
    pair.set([x0, y0, fr(x0 + wa), fr(y0 + ha), fr(x0 + dx), fr(y0 + dy), 0, fr(fr(y0 + ha) + dy)]);
    let [lo, hi] = [bitsOf(pair[4]), bitsOf(pair[2])];
    while (hi - lo > 1) {
      const m = Math.floor((lo + hi) / 2);
      if (iouWith(m).ovr > threshold) hi = m;
      else lo = m;
    }
    const { inter, denom, ovr } = iouWith(hi - 2 + Math.floor(r() * 4));
    if (ovr > threshold) tally.above++;
    else if (ovr === t32) tally.atT++;
    else tally.below++;
    if (Math.abs(inter / denom / mid - 1) < 2 ** -18) tally.exactPath++;
    boxes.set(pair, 8 * p);
  }
  if (trick) boxes.set([0, 0, 1200, 1200], 8 * pairs);
  const scores = Float32Array.from(groups, (_, i) => (i === 2 * pairs ? 0 : i % 2 ? 0.5 : 1));
  const summary = `${pairs} pairs: float32 IoU below T ${tally.below}, == T ${tally.atT}, above ${tally.above}; ${tally.exactPath} decided by the exact integer path`;
  return { boxes, scores, groups, summary };
}

const SPECIALS = [NaN, -Infinity, Infinity, -0, 0, 1e-45, -1e-45, 3.4028234663852886e38, -3.4028234663852886e38];

/** Scores from a small set (many ties) with the special values sprinkled in. */
function awkwardScores(seed: number, n: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = r() < 0.02 ? SPECIALS[Math.floor(r() * SPECIALS.length)] : Math.round(r() * 64) / 8 - 4;
  }
  return out;
}

/** `data` behind `offset` elements of +inf (they would win if a kernel read them). */
function behind<T extends Float32Array | Uint32Array>(data: T, offset: number): T {
  const out = new (data.constructor as { new (n: number): T })(offset + data.length);
  out.fill(Infinity as never);
  out.set(data as never, offset);
  return out;
}

/** Submits what `rec` recorded and waits for it; returns the milliseconds. */
async function finish(rec: Recorder): Promise<number> {
  const t0 = performance.now();
  rec.submit();
  await rec.ctx.device.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

function checkSorted(what: string, got: SortResult & { count: number }, want: SortResult, slots: number): void {
  const live = want.values.length;
  if (got.count !== live) throw new Error(`${what}: outCount ${got.count}, expected ${live}`);
  for (let i = 0; i < slots; i++) {
    const wantValue = i < live ? want.values[i] : 0xffffffff;
    const wantKey = i < live ? want.keys[i] : -Infinity;
    if (got.values[i] !== wantValue || !Object.is(got.keys[i], wantKey)) {
      throw new Error(`${what}: first mismatch at [${i}] of ${slots}: got (${got.keys[i]}, ${got.values[i]}), want (${wantKey}, ${wantValue})`);
    }
  }
  console.log(`    ${what}: ${live} live of ${slots} slots match exactly`);
}

interface SortCase extends SortInput {
  name: string;
  /** Put `count` in a GPU buffer (otherwise the whole input is live). */
  gpuCount?: boolean;
  /** Read the input from this element of bigger buffers. */
  inOffset?: number;
}

async function runSort(ctx: GpuContext, c: SortCase): Promise<number> {
  const n = c.keys.length;
  const sort = new SortDescending(ctx, n);
  const rec = new Recorder(ctx, 'sort-test');
  try {
    const outKeys = rec.output('outKeys', [n]);
    const outValues = rec.output('outValues', [n]);
    const outCount = rec.output('outCount', [1]);
    const at = c.inOffset ?? 0;
    sort.record(
      rec,
      {
        keys: rec.input('keys', behind(c.keys, at)),
        values: c.values && rec.input('values', behind(c.values, at)),
        valid: c.valid && rec.input('valid', behind(c.valid, at)),
        count: c.gpuCount ? rec.input('count', new Uint32Array([c.count ?? n])) : undefined,
        outKeys,
        outValues,
        outCount,
      },
      { inOffset: at },
    );
    const ms = await finish(rec);
    const got = { keys: await ctx.readF32(outKeys.buffer, n), values: await ctx.readU32(outValues.buffer, n), count: (await ctx.readU32(outCount.buffer, 1))[0] };
    checkSorted(c.name, got, sortDescendingRef(c.gpuCount ? c : { ...c, count: undefined }), n);
    return ms;
  } finally {
    rec.destroy();
    sort.destroy();
  }
}

const sortSuite = gpuSuite('SortDescending');
const permutation = (seed: number, n: number): Uint32Array => {
  const r = rng(seed);
  const p = Uint32Array.from({ length: n }, (_, i) => i * 7 + 3);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
};
const flags = (seed: number, n: number, pValid: number): Uint32Array => {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => (r() < pValid ? 1 : 0));
};
const sortCases: SortCase[] = [
  { name: 'n=1', keys: new Float32Array([0.25]) },
  { name: 'n=1, count 0 in a GPU buffer', keys: new Float32Array([0.25]), count: 0, gpuCount: true },
  { name: 'n=2, equal scores (tie -> lower index)', keys: new Float32Array([-0, 0]) },
  { name: 'n=3, NaN / -inf / +inf', keys: new Float32Array([NaN, -Infinity, Infinity]) },
  { name: 'n=3, count 2', keys: new Float32Array([1, 2, 3]), count: 2, gpuCount: true },
  { name: 'n=1000, explicit values break the ties', keys: awkwardScores(11, 1000), values: permutation(12, 1000) },
  { name: 'n=4097, count 4000, read from element 333 of the buffers', keys: awkwardScores(13, 4097), count: 4000, gpuCount: true, inOffset: 333 },
  { name: 'n=70000, valid flags and count 65537', keys: awkwardScores(14, 70000), valid: flags(15, 70000, 0.3), count: 65537, gpuCount: true },
];
sortCases.forEach((c) => bothTiers(sortSuite, c.name, (ctx) => runSort(ctx, c)));
bothTiers(sortSuite, 'n=200000 (RPN P2 scale), count 199999; timing', async (ctx) => {
  const c: SortCase = { name: 'n=200000', keys: awkwardScores(16, 200_000), count: 199_999, gpuCount: true };
  await runSort(ctx, c); // first run compiles the pipelines
  const ms = await runSort(ctx, c);
  console.log(`    timing: sort of 200000 (f32, u32) pairs ${ms.toFixed(1)} ms on ${ctx.report.description || ctx.report.device}`);
});
sortSuite.run();

interface TopKCase extends SortInput {
  name: string;
  k: number;
  gpuCount?: boolean;
  inOffset?: number;
  timing?: boolean;
}

async function runTopK(ctx: GpuContext, c: TopKCase): Promise<void> {
  const n = c.keys.length;
  const topk = new TopK(ctx, n, c.k);
  const slots = Math.min(c.k, n);
  const offset = 5; // write into a slice of a larger buffer, as the RPN concatenates its levels
  const outputs = new Recorder(ctx, 'topk-outputs'); // owns the outputs both recordings write
  const recs: Recorder[] = [];
  try {
    const outKeys = outputs.input('outKeys', new Float32Array(offset + slots).fill(7));
    const outValues = outputs.output('outValues', [offset + slots]);
    const outCount = outputs.output('outCount', [1]);
    const at = c.inOffset ?? 0;
    const record = () => {
      const rec = new Recorder(ctx, 'topk-test');
      recs.push(rec);
      topk.record(
        rec,
        {
          keys: rec.input('keys', behind(c.keys, at)),
          values: c.values && rec.input('values', behind(c.values, at)),
          count: c.gpuCount ? rec.input('count', new Uint32Array([c.count ?? n])) : undefined,
          outKeys,
          outValues,
          outCount,
        },
        { inOffset: at, outOffset: offset },
      );
      return rec;
    };
    await finish(record());
    if (c.timing) console.log(`    timing: top-${c.k} of ${n} ${(await finish(record())).toFixed(1)} ms`);
    const keys = await ctx.readF32(outKeys.buffer);
    if (keys[offset - 1] !== 7) throw new Error(`${c.name}: wrote before outOffset`);
    const got = { keys: keys.subarray(offset), values: (await ctx.readU32(outValues.buffer)).subarray(offset), count: (await ctx.readU32(outCount.buffer, 1))[0] };
    checkSorted(`${c.name} (${topk.run > topk.tile.block ? `full sort, tile ${topk.tile.block}` : `bitonic selection, runs of ${topk.run}`})`, got, topkRef(c, c.k), slots);
  } finally {
    for (const rec of recs) rec.destroy();
    outputs.destroy();
    topk.destroy();
  }
}

const topkSuite = gpuSuite('TopK');
const topkCases: TopKCase[] = [
  { name: 'RPN P2: k=1000 of 201600; timing', keys: awkwardScores(21, 201_600), k: 1000, timing: true },
  { name: 'RPN pool level: k=min(1000, 663), from element 50400 of the logits', keys: awkwardScores(22, 663), k: 1000, inOffset: 50_400 },
  { name: 'k=1000 > count 300 (GPU buffer) of 5000', keys: awkwardScores(23, 5000), count: 300, gpuCount: true, k: 1000 },
  { name: 'k=1 of 70000, explicit values', keys: awkwardScores(24, 70_000), values: permutation(25, 70_000), k: 1 },
  { name: 'k=37 of 4097', keys: awkwardScores(26, 4097), k: 37 },
  { name: 'k=3000 of 10000 (past the tile: full sort)', keys: awkwardScores(27, 10_000), k: 3000 },
];
topkCases.forEach((c) => bothTiers(topkSuite, c.name, (ctx) => runTopK(ctx, c)));
topkSuite.run();

interface NmsCase {
  name: string;
  boxes: Float32Array;
  scores: Float32Array;
  groups?: Uint32Array;
  options: PostNmsOptions;
  integerPathOnly?: boolean;
}

/** SortDescending (valid flags, count in a GPU buffer) then GreedyNms, checked against torchvision's semantics. */
async function runNms(ctx: GpuContext, c: NmsCase, timing = false): Promise<number[]> {
  const n = c.scores.length;
  const o = c.options;
  const sort = new SortDescending(ctx, n);
  const spec: NmsSpec = { iouThreshold: o.iouThreshold, maxKeep: o.maxKeep, coordinateTrickMaxCount: o.coordinateTrickMaxCount, integerPathOnly: c.integerPathOnly };
  const nms = new GreedyNms(ctx, spec);
  const rec = new Recorder(ctx, 'sort+nms');
  const again = new Recorder(ctx, 'nms-timing');
  let kept: number;
  let got: Uint32Array;
  try {
    const order = rec.output('order', [n]);
    const count = rec.output('count', [1]);
    const keep = rec.output('keep', [o.maxKeep]);
    const keepCount = rec.output('keepCount', [1]);
    sort.record(rec, {
      keys: rec.input('scores', c.scores),
      valid: o.valid && rec.input('valid', Uint32Array.from(o.valid)),
      count: o.count !== undefined ? rec.input('count', new Uint32Array([o.count])) : undefined,
      outValues: order,
      outCount: count,
    });
    const recordNms = (r: Recorder) => nms.record(r, { boxes: r.input('boxes', c.boxes), groups: c.groups && r.input('groups', c.groups), order, count, keep, keepCount }, n);
    recordNms(rec);
    await finish(rec);
    if (timing) {
      recordNms(again); // NMS alone, on the sorted order already in `order`
      const ms = await finish(again);
      console.log(`    timing: NMS over ${(await ctx.readU32(count.buffer, 1))[0]} sorted candidates ${ms.toFixed(1)} ms`);
    }
    kept = (await ctx.readU32(keepCount.buffer, 1))[0];
    got = await ctx.readU32(keep.buffer, o.maxKeep);
  } finally {
    again.destroy();
    rec.destroy();
    sort.destroy();
  }
  const want = postNmsRef(c.boxes, c.scores, c.groups ?? new Uint32Array(n), o);
  if (kept !== want.length) throw new Error(`${c.name}: kept ${kept}, torchvision keeps ${want.length}`);
  for (let i = 0; i < o.maxKeep; i++) {
    const w = i < want.length ? want[i] : 0xffffffff;
    if (got[i] !== w) throw new Error(`${c.name}: keep[${i}] = ${got[i]}, torchvision ${w} (first of the mismatches; ${kept} kept)`);
  }
  console.log(`    ${c.name}: ${kept} kept, same indices in the same order`);
  return want;
}

const nmsSuite = gpuSuite('GreedyNms');
bothTiers(nmsSuite, 'a box suppressed in a later 128-block does not suppress (no state leaks between blocks)', async (ctx) => {
  // Block 0 keeps every lane (disjoint boxes). In block 1, A (lane 0) suppresses B (lane 5), and B
  // overlaps C (lane 6) while A does not: C must be kept. A kept-lane mask left over from block 0
  // (Dawn on lavapipe did not re-zero an uninitialised var declared in the loop) dropped C.
  const n = 140;
  const boxes = new Float32Array(n * 4);
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    boxes.set([i * 20, 100, i * 20 + 10, 110], i * 4);
    scores[i] = 1 - i / 1000;
  }
  boxes.set([5000, 0, 5010, 10], 128 * 4); // A
  boxes.set([5000, 2, 5010, 12], 133 * 4); // B: IoU(A, B) = 0.67
  boxes.set([5000, 4, 5010, 14], 134 * 4); // C: IoU(B, C) = 0.67, IoU(A, C) = 0.43
  const want = await runNms(ctx, { name: 'block carry-over', boxes, scores, options: { iouThreshold: 0.5, maxKeep: 200 } });
  if (!want.includes(134) || want.includes(133)) throw new Error('the reference itself should keep C and drop B');
});
bothTiers(nmsSuite, 'RPN-like: 4663 clustered boxes, 5 levels, IoU 0.7, keep 1000, 10% invalid; timing', async (ctx) => {
  const data = clusteredBoxes(31, 4663, { groups: 5, clusters: 60 });
  await runNms(ctx, { name: 'rpn', ...data, options: { iouThreshold: 0.7, maxKeep: 1000, valid: flags(32, 4663, 0.9), coordinateTrickMaxCount: TORCHVISION_CPU_COORDINATE_TRICK_MAX } });
  const big = clusteredBoxes(33, 5000, { groups: 5, clusters: 400 });
  await runNms(ctx, { name: '5000 candidates, 400 clusters', ...big, options: { iouThreshold: 0.7, maxKeep: 1000 } }, true);
});
bothTiers(nmsSuite, 'box-head-like: 6000 candidates, 90 classes, IoU 0.5, keep 100, count 5000 in a GPU buffer', async (ctx) => {
  const data = clusteredBoxes(34, 6000, { groups: 90, clusters: 30, groupBase: 1 });
  await runNms(ctx, { name: 'box head', ...data, options: { iouThreshold: 0.5, maxKeep: 100, count: 5000, valid: flags(35, 6000, 0.7), coordinateTrickMaxCount: TORCHVISION_CPU_COORDINATE_TRICK_MAX } });
});
bothTiers(nmsSuite, 'coordinate trick (<= 1000 boxes reach batched_nms: torchvision CPU rule) vs vanilla, IoU one ulp around 0.5 after the shift', async (ctx) => {
  const data = nearThresholdPairs(37, 450, 0.5, true);
  console.log(`    ${data.summary}`);
  const o = { iouThreshold: 0.5, maxKeep: 1000 };
  const trick = await runNms(ctx, { name: 'coordinate trick', ...data, options: { ...o, coordinateTrickMaxCount: TORCHVISION_CPU_COORDINATE_TRICK_MAX } });
  const vanilla = await runNms(ctx, { name: 'vanilla (per class)', ...data, options: o });
  const onlyOne = trick.filter((i) => !vanilla.includes(i)).length + vanilla.filter((i) => !trick.includes(i)).length;
  if (onlyOne === 0) throw new Error('the two torchvision paths agree on this input: it does not tell them apart');
  console.log(`    the two torchvision paths disagree on ${onlyOne} boxes, and the GPU follows each`);
});
bothTiers(nmsSuite, 'maxKeep cut: 3000 disjoint boxes keep the best 1000, then the best 100', async (ctx) => {
  const n = 3000;
  const boxes = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) boxes.set([(i % 60) * 20, Math.floor(i / 60) * 20, (i % 60) * 20 + 15, Math.floor(i / 60) * 20 + 15], 4 * i);
  const scores = awkwardScores(41, n).map((s) => (Number.isFinite(s) ? s : 0));
  await runNms(ctx, { name: 'keep 1000', boxes, scores, options: { iouThreshold: 0.7, maxKeep: 1000 } });
  await runNms(ctx, { name: 'keep 100', boxes, scores, options: { iouThreshold: 0.5, maxKeep: 100 } });
});
bothTiers(nmsSuite, 'identical boxes with identical scores, zero-area boxes, count 0', async (ctx) => {
  const boxes: number[] = [];
  const scores: number[] = [];
  for (let i = 0; i < 300; i++) {
    const kind = i % 3;
    if (kind === 0) boxes.push(10, 10, 50, 50); // identical: only the lowest index survives
    else if (kind === 1) boxes.push(30, 30, 30, 80); // zero width: 0 / 0 = NaN, never suppressed
    else boxes.push(20 + (i % 7), 20, 60, 20); // zero height, overlapping nothing
    scores.push(kind === 0 ? 0.5 : 0.25 * (i % 2));
  }
  const c = { boxes: new Float32Array(boxes), scores: new Float32Array(scores) };
  await runNms(ctx, { name: 'degenerate boxes', ...c, options: { iouThreshold: 0.5, maxKeep: 1000 } });
  await runNms(ctx, { name: 'count 0', ...c, options: { iouThreshold: 0.5, maxKeep: 100, count: 0 } });
});
for (const threshold of [0.7, 0.5]) {
  bothTiers(nmsSuite, `IoU one float32 ulp around ${threshold} (exact integer decision)`, async (ctx) => {
    const pairs = nearThresholdPairs(50 + threshold * 10, 450, threshold);
    console.log(`    ${pairs.summary}`);
    await runNms(ctx, { name: `pairs around ${threshold}`, ...pairs, options: { iouThreshold: threshold, maxKeep: 1000 } });
  });
}
bothTiers(nmsSuite, 'every IoU decided by the integer path (what a device with a coarser division relies on)', async (ctx) => {
  const clustered = clusteredBoxes(61, 3000, { groups: 5, clusters: 100 });
  await runNms(ctx, { name: 'clustered, integer path only', ...clustered, options: { iouThreshold: 0.7, maxKeep: 1000 }, integerPathOnly: true });
  // float32(0.7) < 0.7 but float32(0.3) > 0.3: T is then the float below float32(0.3).
  for (const threshold of [0.7, 0.3]) {
    const pairs = nearThresholdPairs(62, 450, threshold);
    await runNms(ctx, { name: `pairs around ${threshold}, integer path only`, ...pairs, options: { iouThreshold: threshold, maxKeep: 1000 }, integerPathOnly: true });
  }
});
nmsSuite.run();
