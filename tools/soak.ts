// Soak test for resource hygiene (`npm run soak [-- --segments N --cycles N]`): on one device,
// N segmentations of mixed image sizes in a fixed pattern that makes the plan cache both hit and
// evict, then M cycles of prune -> load -> segment -> destroy at varying ratios. It checks what
// the engine tracks (ctx.memory: live buffers and bytes) rather than trusting it looks fine:
// - every segmentation of a size gives the detections of its first one (no state leaks between runs);
// - once the pattern has run once, the live buffers and bytes after each call equal those one
//   pattern earlier (the plan cache is in the same state, so any growth is a leak);
// - model.destroy() and every prune cycle return to the baseline, to the buffer and the byte (the
//   baseline is ctx.memory when the soak starts, not zero: a context holds its own buffers, e.g.
//   the 16-byte unusedBinding it creates at construction);
// - the Node heap (after gc, with --expose-gc) grows by less than HEAP_SLACK_MIB from the end of
//   the warm-up (two patterns: pipelines compiled, caches filled) to the end.
// Prints a table and PASS/FAIL; exits 1 on failure. tests/reliability.test.ts runs a short version.

import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN, type RgbImage, type SegmentResult } from '../engine/maskrcnn/model.ts';
import { prune } from '../prune/index.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors } from '../weights-loader/safetensors.ts';
import { parseCommandLine, UsageError } from '../io/args.ts';
import { BUNDLED_MODEL } from '../io/bundled.ts';
import { IDENTICAL_DETECTIONS, sameDetections } from '../eval/match.ts';

/** Heap growth after the warm-up that counts as a leak (one segmentation's JS objects are about 100 KB). */
export const HEAP_SLACK_MIB = 8;

/** The order sizes are used in, repeated (fewer sizes drop the missing indices): size 0 stays cached, the others evict each other. */
const PATTERN = [0, 1, 0, 2, 3, 0, 4, 5];
export const DEFAULT_SIZES: Array<[number, number]> = [[240, 320], [480, 640], [300, 300], [384, 512], [200, 520], [427, 640]];

export interface SoakOptions {
  segments: number;
  cycles: number;
  /** [height, width] of the images; the pattern uses the first min(6, n). */
  sizes?: Array<[number, number]>;
  maxCachedPlans?: number;
  /** safetensors bytes (default: the bundled model). */
  weights?: Uint8Array;
  log?: (line: string) => void;
}

export interface SoakPhase {
  name: string;
  count: number;
  ms: number;
  buffers: [number, number];
  mib: [number, number];
  peakMib: number;
}

export interface SoakReport {
  phases: SoakPhase[];
  /** Live buffers and bytes when the soak started (what the context itself holds). */
  baseline: { buffers: number; bytes: number };
  /** Node heap after gc: at the start, after the warm-up, after the segmentations, at the end (--expose-gc only). */
  heapMib: { start: number; warm: number; segmented: number; end: number } | undefined;
  failures: string[];
  pass: boolean;
}

/** Gray background with seeded filled squares and discs: shapes the bundled model knows. */
export function drawShapes(height: number, width: number, seed: number, count = 6): RgbImage {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const data = new Uint8Array(height * width * 3).fill(110);
  for (let k = 0; k < count; k++) {
    const size = Math.max(4, Math.floor((0.12 + 0.2 * rand()) * Math.min(height, width)));
    const x0 = Math.floor(rand() * Math.max(1, width - size));
    const y0 = Math.floor(rand() * Math.max(1, height - size));
    const colour = [40 + Math.floor(200 * rand()), 40 + Math.floor(200 * rand()), 40 + Math.floor(200 * rand())];
    const disc = rand() < 0.5;
    for (let y = y0; y < Math.min(height, y0 + size); y++) {
      for (let x = x0; x < Math.min(width, x0 + size); x++) {
        const dx = x - x0 - size / 2;
        const dy = y - y0 - size / 2;
        if (!disc || dx * dx + dy * dy <= (size * size) / 4) data.set(colour, (y * width + x) * 3);
      }
    }
  }
  return { width, height, data };
}

const mib = (bytes: number) => bytes / 2 ** 20;

function heapMib(): number | undefined {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return undefined;
  gc();
  gc();
  return mib(process.memoryUsage().heapUsed);
}

export async function runSoak(ctx: GpuContext, options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => undefined);
  const sizes = (options.sizes ?? DEFAULT_SIZES).slice(0, 6);
  const pattern = PATTERN.filter((i) => i < sizes.length);
  const weights = options.weights ?? new Uint8Array(readFileSync(BUNDLED_MODEL));
  const failures: string[] = [];
  const phases: SoakPhase[] = [];
  const images = sizes.map(([h, w], i) => drawShapes(h, w, 1000 + i));
  const memory = () => ctx.memory;
  const baseline = memory();
  const heapStart = heapMib();
  let heapWarm: number | undefined;

  const phase = (name: string, count: number, start: number, before: { buffers: number; bytes: number }) => {
    const after = memory();
    phases.push({ name, count, ms: performance.now() - start, buffers: [before.buffers, after.buffers], mib: [mib(before.bytes), mib(after.bytes)], peakMib: mib(after.peakBytes) });
  };

  // ---- segmentations of mixed sizes ----
  ctx.resetPeak();
  let start = performance.now();
  let before = memory();
  const model = await loadMaskRCNN(ctx, weights);
  model.maxCachedPlans = options.maxCachedPlans ?? 4;
  phase('load model', 1, start, before);

  start = performance.now();
  before = memory();
  const firstResult = new Map<number, SegmentResult>();
  const after: Array<{ buffers: number; bytes: number }> = [];
  for (let i = 0; i < options.segments; i++) {
    const s = pattern[i % pattern.length];
    const result = await model.segment(images[s]);
    const first = firstResult.get(s);
    if (!first) firstResult.set(s, result);
    else if (sameDetections(result.detections, first.detections, IDENTICAL_DETECTIONS)) failures.push(`segmentation ${i} (${sizes[s].join('x')}) differs from the first one of that size`);
    const m = memory();
    after.push({ buffers: m.buffers, bytes: m.bytes });
    const prev = after[i - pattern.length];
    // From the second pattern on, the plan cache (LRU) holds what it held one pattern earlier.
    if (i >= 2 * pattern.length - 1 && (prev.buffers !== m.buffers || prev.bytes !== m.bytes)) {
      failures.push(`after segmentation ${i}: ${m.buffers} buffers / ${m.bytes} bytes live, one pattern earlier ${prev.buffers} / ${prev.bytes}`);
    }
    if (i === 2 * pattern.length - 1) heapWarm = heapMib();
    if ((i + 1) % 25 === 0) log(`  ${i + 1}/${options.segments} segmentations, ${m.buffers} buffers, ${mib(m.bytes).toFixed(1)} MiB live`);
  }
  phase(`segment (${sizes.length} sizes, cache ${model.maxCachedPlans})`, options.segments, start, before);
  const heapSegmented = heapMib();

  start = performance.now();
  before = memory();
  model.destroy();
  phase('model.destroy()', 1, start, before);
  const afterDestroy = memory();
  if (afterDestroy.buffers !== baseline.buffers || afterDestroy.bytes !== baseline.bytes) {
    failures.push(`model.destroy() left ${afterDestroy.buffers - baseline.buffers} buffers / ${afterDestroy.bytes - baseline.bytes} bytes over the baseline`);
  }

  // ---- prune -> load -> segment -> destroy ----
  const file = parseSafetensors(weights, maskrcnnParseOptions);
  start = performance.now();
  before = memory();
  for (let c = 0; c < options.cycles; c++) {
    const ratio = Math.round((0.1 + (0.6 * c) / Math.max(1, options.cycles - 1)) * 100) / 100;
    const { file: pruned } = await prune(ctx, file, { ratio });
    const afterPrune = memory();
    if (afterPrune.buffers !== baseline.buffers || afterPrune.bytes !== baseline.bytes) failures.push(`prune cycle ${c} (ratio ${ratio}): prune() left ${afterPrune.buffers - baseline.buffers} buffers allocated`);
    const small = await loadMaskRCNN(ctx, pruned);
    const result = await small.segment(images[c % images.length]);
    if (result.image.width !== sizes[c % sizes.length][1]) failures.push(`prune cycle ${c}: a malformed result`);
    small.destroy();
    const m = memory();
    if (m.buffers !== baseline.buffers || m.bytes !== baseline.bytes) failures.push(`prune cycle ${c} (ratio ${ratio}): ${m.buffers - baseline.buffers} buffers / ${m.bytes - baseline.bytes} bytes over the baseline after destroy()`);
    if ((c + 1) % 5 === 0) log(`  ${c + 1}/${options.cycles} prune cycles`);
  }
  phase('prune + load + segment + destroy', options.cycles, start, before);

  const heapEnd = heapMib();
  const heap =
    heapStart !== undefined && heapSegmented !== undefined && heapEnd !== undefined
      ? { start: heapStart, warm: heapWarm ?? heapStart, segmented: heapSegmented, end: heapEnd }
      : undefined;
  if (heap && heap.end - heap.warm > HEAP_SLACK_MIB) failures.push(`the Node heap grew by ${(heap.end - heap.warm).toFixed(1)} MiB after the warm-up (limit ${HEAP_SLACK_MIB})`);
  return { phases, baseline: { buffers: baseline.buffers, bytes: baseline.bytes }, heapMib: heap, failures, pass: failures.length === 0 };
}

export function formatSoak(report: SoakReport, ctx: GpuContext): string {
  const rows = [['phase', 'count', 'total s', 'ms each', 'live buffers', 'live MiB', 'peak MiB']];
  for (const p of report.phases) {
    rows.push([
      p.name, String(p.count), (p.ms / 1000).toFixed(1), (p.ms / Math.max(1, p.count)).toFixed(0),
      `${p.buffers[0]} -> ${p.buffers[1]}`, `${p.mib[0].toFixed(1)} -> ${p.mib[1].toFixed(1)}`, p.peakMib.toFixed(1),
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const m = ctx.memory;
  lines.push('', `live at the end: ${m.buffers} buffers, ${m.bytes} bytes (baseline when the soak started: ${report.baseline.buffers} buffers, ${report.baseline.bytes} bytes)`);
  const h = report.heapMib;
  lines.push(
    h
      ? `Node heap after gc (MiB): ${h.start.toFixed(1)} at the start, ${h.warm.toFixed(1)} after the warm-up, ${h.segmented.toFixed(1)} after the segmentations, ${h.end.toFixed(1)} after the prune cycles`
      : 'Node heap: not measured (run node with --expose-gc)',
  );
  for (const f of report.failures) lines.push(`FAIL: ${f}`);
  lines.push(report.pass ? 'PASS' : 'FAIL');
  return lines.join('\n');
}

const USAGE = 'usage: npm run soak [-- --segments N --cycles N]   (defaults 200 and 20; see the header of tools/soak.ts)';

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(argv, {
      command: 'npm run soak --',
      options: {
        segments: { type: 'number', integer: true, min: 0, default: 200 },
        cycles: { type: 'number', integer: true, min: 0, default: 20 },
      },
    });
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`soak: ${e.message}\n${USAGE}`);
    return 2;
  }
  if (!parsed) {
    console.log(USAGE);
    return 0;
  }
  const options: SoakOptions = { segments: parsed.values.segments, cycles: parsed.values.cycles, log: (line) => console.log(line) };
  const ctx = await GpuContext.create();
  ctx.setKernelTiers('tuned'); // the tuned kernels, as a warm CLI run uses them (bench:coldstart measures the tiers)
  console.log(`soak: ${options.segments} segmentations of ${DEFAULT_SIZES.map((s) => s.join('x')).join(', ')} and ${options.cycles} prune cycles`);
  const report = await runSoak(ctx, options);
  console.log(formatSoak(report, ctx));
  ctx.device.destroy();
  return report.pass ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = await main(process.argv.slice(2));
