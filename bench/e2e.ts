// End-to-end benchmark: segment() latency per stage and in total, dense and pruned, for
// (1) the bundled model on a bundled sample and (2) the full-size architecture (ResNet-50 widths,
// 91 classes, seeded random weights with decisive scores, a 427x640 image padded to 800x1216).
// Each model is validated before it is timed: dense against torchvision's detections (computed
// once by Python and cached in bench/.cache/), pruned (compact) against the same pruning in mask
// mode on its first, untimed run (which also compiles the plan; --warmup more runs follow).
// Reports medians per stage and in total, the GPU memory high-water mark, GMACs and the speed-up
// next to the GMAC ratio; --json writes everything, samples included.
//
//   npm run bench [-- --only bundled|fullsize] [--repeats N] [--warmup N] [--ratio 0.4]
//                 [--score-thresh 0] [--python /usr/bin/python3] [--json out.json]
//
// Timing runs at box score threshold 0 by default, so every model sends 100 detections through
// the mask head, the work the GMAC count assumes; validation uses torchvision's 0.05.
// Stage times come from GPU timestamps (unquantised: Dawn's 65.5 us quantisation is turned off
// here); on a device without timestamp queries the totals are timed first, then the stages with
// { profile: true } in separate runs (a round trip per stage).

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { resizePlan } from '../engine/kernels/preprocess.ts';
import { loadMaskRCNN, type SegmentResult } from '../engine/maskrcnn/model.ts';
import { STAGES, sumStages, timestampGranularityNs, type StageName } from '../engine/maskrcnn/stages.ts';
import { prune } from '../prune/index.ts';
import type { PartCounts } from '../prune/report.ts';
import { loadMaskRCNNWeights, maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors, type SafetensorsFile } from '../weights-loader/safetensors.ts';
import { readImageFile, type RgbImage } from '../io/image.ts';
import { parseScriptArgs } from '../io/args.ts';
import { describeMatch, MATCH_BOX_IOU, matchReference, type DetectionLike, type MatchReport, type MatchRule } from './match.ts';
import { boxIou } from '../eval/match.ts';
import { median } from './timing.ts';
import { useCachedConvTiling } from '../io/tiles.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: opt } = parseScriptArgs({
  command: 'npm run bench --',
  usage: `usage: npm run bench [-- --only bundled|fullsize] [--repeats N] [--warmup N] [--ratio 0.4]
                 [--score-thresh 0] [--python /usr/bin/python3] [--json out.json]   (see the header of bench/e2e.ts)`,
  options: {
    only: { type: 'string', choices: ['bundled', 'fullsize'] },
    repeats: { type: 'number', min: 0, default: 5 },
    warmup: { type: 'number', min: 0, default: 1 },
    ratio: { type: 'number', min: 0, default: 0.4 },
    'score-thresh': { type: 'number', min: 0, default: 0 },
    python: { type: 'string', default: process.env.MASKGPU_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3') },
    json: { type: 'string' },
  },
});
const only = opt.only;
const repeats = Math.max(1, Math.round(opt.repeats));
const warmup = Math.round(opt.warmup);
const ratio = opt.ratio;
const scoreThresh = opt['score-thresh'];
const python = opt.python;
const cache = `${root}bench/.cache`;
/** Compact vs mask mode: every detection (score >= 0) matched, but for 5 %, scores within 1e-3. */
const PRUNED_RULE: MatchRule = { minScore: 0, allowFailing: 0.05, maxScoreError: 1e-3 };
/** Two scores this close are one tie (matched scores of compact vs mask mode agree to ~1e-8). */
const TIE_SCORE = 1e-6;

/**
 * Reference detections the other list swapped for a tie: no same-label box matches them, but a
 * same-label detection has the same score within TIE_SCORE. Timing runs at threshold 0, where a
 * random network piles up detections of near-equal scores (the pruned full-size one: dozens at
 * 0.0036 of one class) and the 100-detection cap keeps whichever the last float32 bits order first;
 * with Winograd tiles (npm run tune) 15 of 100 changed places, with the direct conv 3 (NOTES 19).
 */
function tieSwaps(reference: DetectionLike[], got: DetectionLike[]): number {
  return reference.filter(
    (r) => !got.some((g) => g.label === r.label && boxIou(r.box, g.box) > MATCH_BOX_IOU) && got.some((g) => g.label === r.label && Math.abs(g.score - r.score) <= TIE_SCORE),
  ).length;
}

interface SuiteSpec {
  name: 'bundled' | 'fullsize';
  weights: string;
  image: string;
  /** torchvision's detections for weights + image (maskgpu's JSON format). */
  reference: string;
  makeReference: () => void;
}

function run(cmd: string, args: string[], what: string): void {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, PYTHONUNBUFFERED: '1' } });
  if (r.error) throw new Error(`${what}: could not run ${cmd} (${r.error.message}); pass --python PATH to a python3 with torch and torchvision`);
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}); see its output above`);
}

function ensureCache(dir: string): string {
  mkdirSync(dir, { recursive: true });
  // Self-ignoring: the generated weights (~178 MB) must never be committed.
  if (!existsSync(`${cache}/.gitignore`)) writeFileSync(`${cache}/.gitignore`, '*\n');
  return dir;
}

function suites(): SuiteSpec[] {
  const bundledWeights = `${root}models/maskgpu-shapes.safetensors`;
  const sample = `${root}models/samples/shapes_2.png`;
  // Keyed by the weights' hash: a retrained bundled model gets a fresh reference.
  const hash = createHash('sha256').update(readFileSync(bundledWeights)).digest('hex').slice(0, 12);
  const bundledRef = `${cache}/bundled/torchvision-${hash}-${basename(sample, '.png')}.json`;
  const full = `${cache}/fullsize`;
  return [
    {
      name: 'bundled',
      weights: bundledWeights,
      image: sample,
      reference: bundledRef,
      makeReference: () => {
        ensureCache(`${cache}/bundled`);
        run(python, ['bench/torchvision_reference.py', '--weights', bundledWeights, '--image', sample, '--out', bundledRef], 'torchvision reference for the bundled model');
      },
    },
    {
      name: 'fullsize',
      weights: `${full}/fullsize-conditioned.safetensors`,
      image: `${full}/image_427x640.png`,
      reference: `${full}/torchvision.json`,
      // compare_fullsize.py makes the weights, the image and torchvision's detections, and checks
      // the CLI's output against them (3-5 min on 2 cores, once).
      makeReference: () => {
        ensureCache(full);
        run(python, ['tools/compare_fullsize.py', '--workdir', full, '--reuse', '--node', process.execPath], 'tools/compare_fullsize.py');
      },
    },
  ].filter((s) => !only || s.name === only) as SuiteSpec[];
}

interface Timed {
  model: string;
  gmacs: PartCounts;
  totalMs: number;
  gpuMs: number;
  stagesMs: Record<StageName, number> | null;
  stagesSource: SegmentResult['stagesSource'];
  timestampGridNs: number | null;
  peakBytes: number;
  detections: number;
  samples: { totalMs: number[]; gpuMs: number[]; stagesMs: Array<Record<StageName, number> | null> };
}

async function detect(ctx: GpuContext, file: SafetensorsFile, image: RgbImage, boxScoreThresh?: number): Promise<DetectionLike[]> {
  const model = await loadMaskRCNN(ctx, file, { boxScoreThresh });
  try {
    return (await model.segment(image)).detections;
  } finally {
    model.destroy();
  }
}

/** `check` sees the first run's detections (untimed: it also compiles the plan) and throws if wrong. */
async function timeModel(ctx: GpuContext, label: string, file: SafetensorsFile, image: RgbImage, gmacs: PartCounts, check?: (d: DetectionLike[]) => void): Promise<Timed> {
  await ctx.device.queue.onSubmittedWorkDone();
  const baseline = ctx.memory.bytes;
  ctx.resetPeak();
  const model = await loadMaskRCNN(ctx, file, { boxScoreThresh: scoreThresh });
  try {
    const first = await model.segment(image);
    check?.(first.detections);
    for (let i = 0; i < warmup; i++) await model.segment(image);
    const runs: SegmentResult[] = [];
    for (let i = 0; i < repeats; i++) runs.push(await model.segment(image));
    let staged = runs;
    if (runs[0].stagesSource === null) {
      staged = [];
      for (let i = 0; i < repeats; i++) staged.push(await model.segment(image, { profile: true }));
    }
    const peakBytes = ctx.memory.peakBytes - baseline;
    const withStages = staged.filter((r) => r.stagesMs);
    const stagesMs = withStages.length
      ? (Object.fromEntries(STAGES.map((s) => [s, median(withStages.map((r) => r.stagesMs![s]))])) as Record<StageName, number>)
      : null;
    const timestampGridNs = staged[0].stagesSource === 'gpu-timestamps' ? Math.min(...withStages.map((r) => timestampGranularityNs(r.stagesMs!))) : null;
    const row: Timed = {
      model: label,
      gmacs,
      totalMs: median(runs.map((r) => r.timingsMs.total)),
      gpuMs: median(runs.map((r) => r.timingsMs.gpu)),
      stagesMs,
      stagesSource: staged[0].stagesSource,
      timestampGridNs,
      peakBytes,
      detections: runs[0].detections.length,
      samples: { totalMs: runs.map((r) => r.timingsMs.total), gpuMs: runs.map((r) => r.timingsMs.gpu), stagesMs: staged.map((r) => r.stagesMs) },
    };
    console.log(`  ${label}: total ${row.totalMs.toFixed(1)} ms, gpu ${row.gpuMs.toFixed(1)} ms (median of ${repeats}), ${row.detections} detections, peak ${(peakBytes / 2 ** 20).toFixed(1)} MiB`);
    return row;
  } finally {
    model.destroy();
  }
}

async function runSuite(ctx: GpuContext, spec: SuiteSpec) {
  if (!existsSync(spec.weights) || !existsSync(spec.image) || !existsSync(spec.reference)) spec.makeReference();
  const file = parseSafetensors(new Uint8Array(readFileSync(spec.weights)), maskrcnnParseOptions);
  const image = await readImageFile(spec.image);
  const reference = JSON.parse(readFileSync(spec.reference, 'utf8')).detections as DetectionLike[];
  const meta = loadMaskRCNNWeights(file).meta;
  const resize = resizePlan(image.height, image.width, meta.minSize, meta.maxSize);
  const inputSize: [number, number] = [resize.paddedH, resize.paddedW];
  console.log(`\n== ${spec.name}: ${spec.weights} (${meta.numClasses} classes) on ${spec.image} ${image.width}x${image.height} -> padded ${inputSize[1]}x${inputSize[0]}`);

  const dense = matchReference(reference, await detect(ctx, file, image));
  console.log(`  validation, dense vs torchvision: ${describeMatch(dense)}: ${dense.passed ? 'PASS' : 'FAIL'}`);
  if (!dense.passed) throw new Error(`${spec.name}: the dense model does not reproduce torchvision (${dense.failing.join('; ')}); not timing a wrong model`);

  const t0 = performance.now();
  const compact = await prune(ctx, file, { ratio, mode: 'compact', inputSize });
  const pruneMs = performance.now() - t0;
  // Compact must compute what mask mode computes. Checked at the timing threshold, where there
  // are detections to compare even when pruning a random network leaves none above 0.05.
  const maskedDetections = await detect(ctx, (await prune(ctx, file, { ratio, mode: 'mask', inputSize })).file, image, scoreThresh);
  let pruned: MatchReport | undefined;
  const checkPruned = (got: DetectionLike[]) => {
    pruned = matchReference(maskedDetections, got, PRUNED_RULE);
    const swaps = tieSwaps(maskedDetections, got);
    // Tie swaps do not count against the 5 %: the rest must still match.
    pruned.passed = pruned.failing.length - swaps <= Math.floor(PRUNED_RULE.allowFailing! * pruned.decisive) && pruned.worstScoreError <= PRUNED_RULE.maxScoreError!;
    console.log(`  validation, pruned ${ratio} compact vs mask mode at score threshold ${scoreThresh}: ${describeMatch(pruned)} (${swaps} of the unmatched swapped for a tie: same label, score within ${TIE_SCORE}): ${pruned.passed ? 'PASS' : 'FAIL'}`);
    if (!pruned.passed || !maskedDetections.length) {
      throw new Error(`${spec.name}: the compacted model does not reproduce the masked one (${pruned.failing.slice(0, 5).join('; ') || 'no detections to compare'}); not timing a wrong model`);
    }
  };
  const g = compact.report.summary.gmacs;

  const rows = [
    await timeModel(ctx, 'dense', file, image, g.before),
    await timeModel(ctx, `pruned ${Math.round(ratio * 100)} %`, compact.file, image, g.after, checkPruned),
  ];
  return {
    name: spec.name,
    weights: spec.weights,
    image: { path: spec.image, width: image.width, height: image.height, padded: inputSize },
    validation: { dense, prunedVsMask: pruned },
    pruning: { ratio, channels: compact.report.summary.channels, params: compact.report.summary.params, pruneMs, gmacsCountedFor: { rois: g.rois, detections: g.detections } },
    rows,
  };
}

type SuiteResult = Awaited<ReturnType<typeof runSuite>>;

const fmt = (v: number | undefined | null, digits = 1) => (v === undefined || v === null || !Number.isFinite(v) ? '-' : v.toFixed(digits));

function printSuite(s: SuiteResult): void {
  const [d, p] = s.rows;
  const source = d.stagesSource === 'gpu-timestamps' ? `GPU timestamps (${d.timestampGridNs} ns grid${d.timestampGridNs! >= 4096 ? ': QUANTISED' : ''})` : d.stagesSource === 'cpu' ? 'CPU, stage-by-stage submits' : 'not measured';
  console.log(`\n#### ${s.name}: ${basename(s.weights)} on ${basename(s.image.path)} ${s.image.width}x${s.image.height} (padded ${s.image.padded[1]}x${s.image.padded[0]})`);
  console.log(`median of ${repeats} runs after 1 checked + ${warmup} warm-up run(s), box score threshold ${scoreThresh}; stages: ${source}; ms\n`);
  console.log(`| model | GMACs | ${STAGES.join(' | ')} | Σ stages | gpu | total | peak MiB | detections |`);
  console.log(`|---|---:|${STAGES.map(() => '---:|').join('')}---:|---:|---:|---:|---:|`);
  for (const r of s.rows) {
    const st = r.stagesMs;
    console.log(`| ${r.model} | ${fmt(r.gmacs.total, 2)} | ${STAGES.map((k) => fmt(st?.[k])).join(' | ')} | ${st ? fmt(sumStages(st)) : '-'} | ${fmt(r.gpuMs)} | ${fmt(r.totalMs)} | ${fmt(r.peakBytes / 2 ** 20)} | ${r.detections} |`);
  }
  const speed = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}×` : '-');
  const ds = d.stagesMs;
  const ps = p.stagesMs;
  console.log(`| speed-up, time | ${speed(d.gmacs.total, p.gmacs.total)} by GMACs | ${STAGES.map((k) => speed(ds?.[k], ps?.[k])).join(' | ')} | ${ds && ps ? speed(sumStages(ds), sumStages(ps)) : '-'} | ${speed(d.gpuMs, p.gpuMs)} | ${speed(d.totalMs, p.totalMs)} | | |`);
  const byPart: Partial<Record<StageName, string>> = {
    backbone: `${speed(d.gmacs.backbone, p.gmacs.backbone)} (with FPN)`,
    rpn: speed(d.gmacs.rpn, p.gmacs.rpn),
    boxHead: speed(d.gmacs.boxHead, p.gmacs.boxHead),
    maskHead: speed(d.gmacs.maskHead, p.gmacs.maskHead),
  };
  console.log(`| speed-up, GMACs | | ${STAGES.map((k) => byPart[k] ?? '').join(' | ')} | | | ${speed(d.gmacs.total, p.gmacs.total)} | | |`);
  console.log(
    `\nGMACs: conv/linear layers at ${s.image.padded[0]}x${s.image.padded[1]}, ${s.pruning.gmacsCountedFor.rois} RoIs, ${s.pruning.gmacsCountedFor.detections} masks (prune report); ` +
      `pruned: ${(100 * s.pruning.channels.ratio).toFixed(1)} % of prunable channels, compression ${s.pruning.params.compressionRate.toFixed(3)}.`,
  );
  for (const r of s.rows) {
    if (r.stagesMs) console.log(`${r.model}: Σ stages / gpu wall = ${(sumStages(r.stagesMs) / r.gpuMs).toFixed(3)} (GPU work vs submit-to-mapped time)`);
  }
}

const started = new Date();
const loadBefore = loadavg();
// Nanosecond timestamps in Node: Dawn quantises them to 65.5 us unless this toggle is off.
const ctx = await GpuContext.create({ dawnFlags: ['disable-dawn-features=timestamp_quantization'] });
ctx.setKernelTiers('tuned'); // timed runs use the tuned kernels from the first run on (bench:coldstart measures the tiers)
useCachedConvTiling(ctx); // the tuned conv tiles, as the CLI uses them
console.log(`adapter: ${describeAdapter(ctx.report)}`);
console.log(`host: ${cpus().length} cores, load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} (1/5/15 min); ${started.toISOString()}`);
const results: SuiteResult[] = [];
for (const spec of suites()) results.push(await runSuite(ctx, spec));
const loadAfter = loadavg();
for (const s of results) printSuite(s);
console.log(`\nload average before ${loadBefore.map((x) => x.toFixed(2)).join(' ')}, after ${loadAfter.map((x) => x.toFixed(2)).join(' ')}`);
const json = opt.json;
if (json) {
  writeFileSync(
    json,
    JSON.stringify({ adapter: ctx.report, started: started.toISOString(), cores: cpus().length, loadavg: { before: loadBefore, after: loadAfter }, options: { repeats, warmup, ratio, scoreThresh }, suites: results }, null, 1),
  );
  console.log(`wrote ${json}`);
}
ctx.device.destroy();
