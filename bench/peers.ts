// maskgpu next to its peers, in one run on one machine: the same weights, the same image, each
// engine's outputs checked before it is timed, times as medians and as ratios to maskgpu dense.
//
//   npm run bench:peers -- [--config bundled|fullsize|all] [--repeats N] [--warmup N] [--budget-s S]
//                          [--engines maskgpu,maskgpu-pruned,torchvision,ort-node-cpu,...] [--json out.json]
//
// Engines, per configuration:
//   maskgpu, maskgpu-pruned  dense, and pruned 40 % (prune(ctx, file, {ratio: 0.4}), compact): the
//                            backbone alone (ResNetFpn.recordBody + recordFpn into a Recorder, one
//                            submit, wall time to onSubmittedWorkDone, as bench/timing.ts) and the full
//                            model (segment(image).timingsMs.total after the first, planning call); both
//                            with the tuned conv tiles when `npm run tune` cached them (useCachedConvTiling);
//   torchvision              CPU, tools/bench_torchvision.py (system torch, threads = cores), the full
//                            model and model.backbone alone;
//   ort-*                    ONNX Runtime on the backbone (body + FPN, 5 outputs) exported by
//                            tools/export_backbone_onnx.py (bench/peers-ort.ts, one process each). ONNX
//                            Runtime Web has no RoiAlign or NonMaxSuppression on WebGPU, so no ONNX
//                            Runtime engine runs the full Mask R-CNN here.
// Checks before timing: torchvision's detections vs maskgpu dense's (bench/match.ts: box IoU > 0.99,
// mask IoU > 0.98 for every score >= 0.5); each ONNX Runtime engine's 5 maps vs maskgpu dense's FPN
// maps on maskgpu's own preprocessed input; the pruned model's FPN maps and detections vs the same
// pruning in mask mode (what compaction promises). A failing engine is reported, not timed.
// Configurations: `bundled` (models/maskgpu-shapes.safetensors on models/samples/shapes_2.png) and
// `fullsize` (ResNet-50 widths, 91 classes, seeded random weights and the 427x640 image of
// tools/compare_fullsize.py, padded 800x1216; made once under bench/.cache/fullsize).
// --budget-s caps the time one engine spends on warm-up + repeats in one configuration (at least one
// timed run is kept), so the slow software-adapter peers cannot run for hours.

import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg } from 'node:os';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { normalizationTable, recordPreprocess, resizePlan, type ResizePlan } from '../engine/kernels/preprocess.ts';
import { ResNetFpn } from '../engine/maskrcnn/backbone.ts';
import { loadMaskRCNN, type Detection } from '../engine/maskrcnn/model.ts';
import { Recorder } from '../engine/recorder.ts';
import { prune } from '../prune/index.ts';
import { readImageFile, type RgbImage } from '../io/image.ts';
import { parseScriptArgs } from '../io/args.ts';
import { useCachedConvTiling } from '../io/tiles.ts';
import { loadMaskRCNNWeights, maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile } from '../weights-loader/node.ts';
import { serializeSafetensors, type SafetensorsFile, type Tensor } from '../weights-loader/safetensors.ts';
import { describeMatch, matchReference, sameDetections, type DetectionLike } from './match.ts';
import { MAX_RELATIVE_ERROR, ORT_ENGINES, ORT_INSTALL, OUTPUT_NAMES, type OrtEngine, type OrtResult } from './peers-ort.ts';
import { median, submitList, timeDispatches } from './timing.ts';

const REPO = new URL('..', import.meta.url).pathname;
const CACHE = `${REPO}bench/.cache`;
const PYTHON = '/usr/bin/python3'; // Debian's torch; a python3 earlier on PATH may have none
const PRUNE_RATIO = 0.4;

const argv = process.argv.slice(2);
const { values: opt } = parseScriptArgs({
  command: 'npm run bench:peers --',
  usage: `usage: npm run bench:peers -- [--config bundled|fullsize|all] [--repeats N] [--warmup N] [--budget-s S]
                              [--engines maskgpu,maskgpu-pruned,torchvision,ort-node-cpu,...] [--fullsize-dir DIR]
                              [--json out.json]   (see the header of bench/peers.ts)`,
  options: {
    config: { type: 'string', default: 'all' },
    engines: { type: 'string' },
    repeats: { type: 'number', integer: true, min: 1 },
    warmup: { type: 'number', integer: true, min: 0 },
    'budget-s': { type: 'number', above: 0, default: 300 },
    'fullsize-dir': { type: 'string', default: `${CACHE}/fullsize` },
    json: { type: 'string' },
  },
}, argv);
const fullsizeDir = opt['fullsize-dir'];
const CONFIGS = {
  bundled: { weights: `${REPO}models/maskgpu-shapes.safetensors`, image: `${REPO}models/samples/shapes_2.png`, repeats: 5, warmup: 1 },
  fullsize: { weights: `${fullsizeDir}/fullsize-conditioned.safetensors`, image: `${fullsizeDir}/image_427x640.png`, repeats: 3, warmup: 1 },
};
type ConfigName = keyof typeof CONFIGS;
const ENGINES = ['maskgpu', 'maskgpu-pruned', 'torchvision', ...(Object.keys(ORT_ENGINES) as OrtEngine[])];
const engines = (opt.engines ?? ENGINES.join(',')).split(',');
const configArg = opt.config;
const configs = (configArg === 'all' ? Object.keys(CONFIGS) : configArg.split(',')) as ConfigName[];
for (const name of [...engines.filter((e) => !ENGINES.includes(e)), ...configs.filter((c) => !(c in CONFIGS))]) {
  throw new Error(`unknown engine or configuration '${name}': engines ${ENGINES.join(', ')}; configurations ${Object.keys(CONFIGS).join(', ')}`);
}
const budgetMs = 1e3 * opt['budget-s'];
const threads = availableParallelism();

interface Row {
  engine: string;
  part: 'backbone' | 'full';
  what: string;
  gmacs: number;
  medianMs: number | null;
  samplesMs: number[];
  check: string;
  passed: boolean;
  /** Printed under the table. */
  note?: string;
}

/** Runs a command, its output indented (Dawn's lavapipe limit notices dropped); resolves with the exit code. */
function runChild(cmd: string, args: string[]): Promise<number> {
  console.log(`  $ ${cmd} ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    const echo = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line.trim() && !/^Warning: max|UserWarning|_C\._jit_pass/.test(line)) console.log(`    ${line}`);
    };
    child.stdout.on('data', echo);
    child.stderr.on('data', echo);
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
}

/** Warm-up then timed runs of `fn` until `repeats` or the budget (one timed run at least). */
async function timeRuns(fn: () => Promise<number>, repeats: number, warmup: number): Promise<number[]> {
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < warmup + repeats; i++) {
    const ms = await fn();
    if (i >= warmup) samples.push(ms);
    if (performance.now() - start > budgetMs && samples.length) break;
  }
  return samples;
}

interface BackboneRun {
  input: Tensor;
  levels: Tensor[];
  samplesMs: number[];
}

/** maskgpu's preprocess once, then its backbone + FPN alone: timed (repeats > 0) and read back. */
async function maskgpuBackbone(ctx: GpuContext, file: SafetensorsFile, image: RgbImage, resize: ResizePlan, repeats: number, warmup: number): Promise<BackboneRun> {
  const weights = loadMaskRCNNWeights(file);
  const [H, W] = [resize.paddedH, resize.paddedW];
  const backbone = new ResNetFpn(ctx, weights);
  const rec = new Recorder(ctx, 'peers backbone');
  try {
    const table = rec.input('normalization', normalizationTable(weights.meta.imageMean, weights.meta.imageStd), [3, 256]);
    rec.stage('preprocess');
    const { image: imageInput, output: input } = recordPreprocess(rec, resize, table);
    // The input stays acquired (never released to the pool), so the backbone cannot overwrite it.
    rec.stage('backbone');
    const levels = backbone.recordFpn(rec, backbone.recordBody(rec, input));
    const [preprocess, dispatches] = rec.stages(['preprocess', 'backbone']);
    imageInput.write(image.data, image.data.length === image.width * image.height * 3 ? 3 : 4);
    await ctx.checked('maskgpu preprocess', () => submitList(rec, preprocess));
    let samplesMs: number[] = [];
    if (repeats > 0) {
      samplesMs = (await ctx.checked('maskgpu backbone', () => timeDispatches(rec, { dispatches, warmup, repeats }))).samplesMs;
    } else {
      await ctx.checked('maskgpu backbone', () => submitList(rec, dispatches));
    }
    const read = async (buffer: GPUBuffer, shape: number[]): Promise<Tensor> => ({ dtype: 'F32', shape, data: await ctx.readF32(buffer, shape.reduce((a, b) => a * b, 1)) });
    return {
      input: await read(input.buffer, [1, 3, H, W]),
      levels: await Promise.all(levels.map((l) => read(l.buffer, [1, ...l.shape]))),
      samplesMs,
    };
  } finally {
    rec.destroy();
    backbone.destroy();
  }
}

/** Detections of the first (planning) segment() call, then timed calls (repeats > 0). */
async function maskgpuFull(ctx: GpuContext, file: SafetensorsFile, image: RgbImage, repeats: number, warmup: number, check: (d: Detection[]) => string | undefined) {
  const model = await loadMaskRCNN(ctx, file);
  try {
    const detections = (await model.segment(image)).detections;
    const problem = check(detections);
    const samplesMs = problem || repeats === 0 ? [] : await timeRuns(async () => (await model.segment(image)).timingsMs.total, repeats, warmup);
    return { detections, problem, samplesMs };
  } finally {
    model.destroy();
  }
}

function mapError(got: Tensor[], want: Tensor[]): { maxAbs: number; relative: number } {
  let [maxAbs, relative] = [0, 0];
  got.forEach((g, i) => {
    let [err, ref] = [0, 0];
    for (let j = 0; j < g.data.length; j++) {
      const d = Math.abs(g.data[j] - want[i].data[j]);
      if (!(d <= err)) err = d;
      ref = Math.max(ref, Math.abs(want[i].data[j]));
    }
    if (!(err <= maxAbs)) maxAbs = err;
    relative = Math.max(relative, err / ref);
  });
  return { maxAbs, relative };
}

const ortInstalled = (pkg: string): boolean => {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
};

async function runConfig(name: ConfigName, ctx: GpuContext) {
  const c = CONFIGS[name];
  const repeats = opt.repeats ?? c.repeats;
  const warmup = opt.warmup ?? c.warmup;
  if (name === 'fullsize' && !(existsSync(c.weights) && existsSync(c.image))) {
    console.log(`full-size weights and image not in ${fullsizeDir}: making them (tools/compare_fullsize.py's recipe, once)`);
    if ((await runChild(PYTHON, ['tools/bench_torchvision.py', 'make-fullsize', '--out-dir', fullsizeDir])) !== 0) throw new Error('making the full-size weights failed (above)');
  }
  const file = await readSafetensorsFile(c.weights, maskrcnnParseOptions);
  const meta = loadMaskRCNNWeights(file).meta;
  const image = await readImageFile(c.image);
  const resize = resizePlan(image.height, image.width, meta.minSize, meta.maxSize);
  const inputSize: [number, number] = [resize.paddedH, resize.paddedW];
  console.log(`\n## ${name}: ${c.weights.replace(REPO, '')} on ${c.image.replace(REPO, '')} (${image.width}x${image.height}, resized ${resize.outH}x${resize.outW}, padded ${inputSize.join('x')}); median of ${repeats} after ${warmup} warm-up`);

  const pruned = await prune(ctx, file, { ratio: PRUNE_RATIO, inputSize });
  const masked = await prune(ctx, file, { ratio: PRUNE_RATIO, inputSize, mode: 'mask' });
  const g = pruned.report.summary.gmacs;
  const gmacs = { dense: { backbone: g.before.backbone, full: g.before.total }, pruned: { backbone: g.after.backbone, full: g.after.total } };
  console.log(`GMACs at ${inputSize.join('x')} (full model: ${g.rois} RoIs, ${g.detections} masks): dense ${gmacs.dense.backbone} backbone / ${gmacs.dense.full} full; pruned ${PRUNE_RATIO}: ${gmacs.pruned.backbone} / ${gmacs.pruned.full}`);
  const rows: Row[] = [];
  const row = (r: Omit<Row, 'medianMs'>) => rows.push({ ...r, medianMs: r.samplesMs.length ? median(r.samplesMs) : null });

  // torchvision first: it is the reference maskgpu's detections are checked against.
  let tv: { padded: [number, number]; full: { samplesMs: number[] }; backbone: { samplesMs: number[] }; detections: DetectionLike[]; threads: number; torch: string } | undefined;
  if (engines.includes('torchvision') || engines.includes('maskgpu')) {
    const out = `${CACHE}/peers/${name}-torchvision.json`;
    const args = ['tools/bench_torchvision.py', 'time', '--weights', c.weights, '--image', c.image, '--threads', String(threads), '--budget-s', String(budgetMs / 1e3)];
    const [tr, tw] = engines.includes('torchvision') ? [repeats, warmup] : [1, 0];
    if ((await runChild(PYTHON, [...args, '--repeats', String(tr), '--warmup', String(tw), '--out', out])) !== 0) throw new Error(`tools/bench_torchvision.py failed (above)`);
    tv = JSON.parse(readFileSync(out, 'utf8'));
    if (tv!.padded.join('x') !== inputSize.join('x')) throw new Error(`torchvision pads to ${tv!.padded.join('x')}, maskgpu to ${inputSize.join('x')}: the runs would not be comparable`);
  }

  // maskgpu dense: its FPN maps are the reference for ONNX Runtime, torchvision's detections are its check.
  console.log('  maskgpu dense: backbone, then segment()');
  const dense = await maskgpuBackbone(ctx, file, image, resize, engines.includes('maskgpu') ? repeats : 0, warmup);
  if (engines.includes('maskgpu')) {
    row({ engine: 'maskgpu', part: 'backbone', what: 'ResNetFpn, one submit', gmacs: gmacs.dense.backbone, samplesMs: dense.samplesMs, check: 'the reference of the ort-* rows', passed: true });
    let match = '';
    const full = await maskgpuFull(ctx, file, image, repeats, warmup, (d) => {
      const m = matchReference(tv!.detections, d);
      match = describeMatch(m);
      return m.passed ? undefined : `vs torchvision: ${m.failing.join('; ')}`;
    });
    row({ engine: 'maskgpu', part: 'full', what: 'segment(), one submit', gmacs: gmacs.dense.full, samplesMs: full.samplesMs, check: full.problem ?? `vs torchvision: ${match}`, passed: !full.problem });
  }
  if (engines.includes('maskgpu-pruned')) {
    console.log(`  maskgpu pruned ${PRUNE_RATIO}: mask-mode reference, then the compacted backbone and segment()`);
    const reference = await maskgpuBackbone(ctx, masked.file, image, resize, 0, 0);
    const run = await maskgpuBackbone(ctx, pruned.file, image, resize, 0, 0);
    const e = mapError(run.levels, reference.levels);
    const ok = e.relative <= MAX_RELATIVE_ERROR;
    const timed = ok ? await maskgpuBackbone(ctx, pruned.file, image, resize, repeats, warmup) : run;
    row({ engine: 'maskgpu-pruned', part: 'backbone', what: `compacted ${PRUNE_RATIO}`, gmacs: gmacs.pruned.backbone, samplesMs: timed.samplesMs, check: `vs mask-mode pruning: max abs ${e.maxAbs.toExponential(1)} (rel ${e.relative.toExponential(1)})`, passed: ok });
    const maskedDetections = (await maskgpuFull(ctx, masked.file, image, 0, 0, () => undefined)).detections;
    const full = await maskgpuFull(ctx, pruned.file, image, repeats, warmup, (d) => sameDetections(maskedDetections, d));
    row({ engine: 'maskgpu-pruned', part: 'full', what: `compacted ${PRUNE_RATIO}, segment()`, gmacs: gmacs.pruned.full, samplesMs: full.samplesMs, check: full.problem ? `vs mask-mode pruning: ${full.problem}` : `same ${full.detections.length} detections as mask-mode pruning`, passed: !full.problem });
  }
  if (engines.includes('torchvision') && tv) {
    const what = `torch ${tv.torch} CPU, ${tv.threads} threads`;
    row({ engine: 'torchvision', part: 'backbone', what: `${what}, model.backbone`, gmacs: gmacs.dense.backbone, samplesMs: tv.backbone.samplesMs, check: '(the ONNX export of the same module)', passed: true });
    row({ engine: 'torchvision', part: 'full', what: `${what}, model([image])`, gmacs: gmacs.dense.full, samplesMs: tv.full.samplesMs, check: `${tv.detections.length} detections (the reference)`, passed: true });
  }

  const ortEngines = engines.filter((e): e is OrtEngine => e in ORT_ENGINES);
  const missing = ortEngines.filter((e) => !ortInstalled(ORT_ENGINES[e].pkg));
  for (const e of missing) {
    rows.push({ engine: e, part: 'backbone', what: ORT_ENGINES[e].what, gmacs: gmacs.dense.backbone, medianMs: null, samplesMs: [], check: `skipped: ${ORT_ENGINES[e].pkg} is not installed (${ORT_INSTALL})`, passed: true });
  }
  const installed = ortEngines.filter((e) => !missing.includes(e));
  if (installed.length) {
    const hash = createHash('sha256').update(readFileSync(c.weights)).digest('hex').slice(0, 16);
    const model = `${CACHE}/onnx/backbone-${hash}-${inputSize.join('x')}.onnx`;
    if (!existsSync(model)) {
      const code = await runChild(PYTHON, ['tools/export_backbone_onnx.py', '--weights', c.weights, '--height', String(inputSize[0]), '--width', String(inputSize[1]), '--out', model]);
      if (code !== 0) throw new Error('tools/export_backbone_onnx.py failed (above)');
    }
    const reference = `${CACHE}/peers/${name}-maskgpu-fpn.safetensors`;
    const tensors = new Map<string, Tensor>([['input', dense.input], ...dense.levels.map((l, i) => [OUTPUT_NAMES[i], l] as [string, Tensor])]);
    writeFileSync(reference, serializeSafetensors(tensors, { format: 'maskgpu-peers-fpn-v1' }));
    for (const e of installed) {
      const out = `${CACHE}/peers/${name}-${e}.json`;
      const args = ['--import', './tools/register.mjs', 'bench/peers-ort.ts', '--engine', e, '--model', model, '--reference', reference, '--out', out];
      const code = await runChild(process.execPath, [...args, '--repeats', String(repeats), '--warmup', String(warmup), '--budget-s', String(budgetMs / 1e3), '--threads', String(threads)]);
      const r: OrtResult = existsSync(out) && code === 0 ? JSON.parse(readFileSync(out, 'utf8')) : { engine: e, what: ORT_ENGINES[e].what, error: `the process exited with code ${code} before writing a result (output above)` };
      const worst = r.checks?.reduce((a, b) => (b.relative > a.relative ? b : a));
      const check = worst ? `vs maskgpu FPN: max abs ${Math.max(...r.checks!.map((x) => x.maxAbs)).toExponential(1)}, worst rel ${worst.relative.toExponential(1)} (${worst.name})` : '';
      const on = r.adapter ? `on ${r.adapter} (navigator.gpu from the webgpu package)` : r.vulkanDriver && `on ${r.vulkanDriver}`;
      const what = [r.what, on].filter(Boolean).join('; ');
      const note = r.firstRunMs === undefined ? undefined : `session create ${(r.createMs! / 1e3).toFixed(1)} s, first (checked) run ${(r.firstRunMs / 1e3).toFixed(1)} s, then ${r.warmupRuns} warm-up`;
      rows.push({ engine: e, part: 'backbone', what, note, gmacs: gmacs.dense.backbone, medianMs: r.medianMs ?? null, samplesMs: r.samplesMs ?? [], check: [check, r.error && `${r.skipped ? 'skipped' : 'FAILED'}: ${r.error.split('\n')[0]}`].filter(Boolean).join('; '), passed: !r.error || !!r.skipped });
      if (r.error && !r.skipped) console.log(`  ${e}: ${r.error}`);
    }
  }
  return { name, weights: c.weights.replace(REPO, ''), image: c.image.replace(REPO, ''), imageSize: [image.height, image.width], padded: inputSize, repeats, warmup, gmacs, rows };
}

function printTable(result: Awaited<ReturnType<typeof runConfig>>): void {
  const base = (part: Row['part']) => result.rows.find((r) => r.engine === 'maskgpu' && r.part === part)?.medianMs ?? null;
  console.log(`\n#### ${result.name}: padded ${result.padded.join('x')}; ratio = time / maskgpu dense's time of the same part (> 1: slower than maskgpu)\n`);
  console.log('| engine | part | what ran | GMAC | median ms (runs) | ratio | check |');
  console.log('|---|---|---|---:|---:|---:|---|');
  for (const r of result.rows) {
    const b = base(r.part);
    const ms = r.medianMs === null ? '-' : `${r.medianMs.toFixed(r.medianMs < 100 ? 1 : 0)} (${r.samplesMs.length})`;
    const ratio = r.medianMs !== null && b ? `${(r.medianMs / b).toFixed(2)}` : '-';
    console.log(`| ${r.engine} | ${r.part} | ${r.what} | ${r.gmacs.toFixed(2)} | ${ms} | ${ratio} | ${r.passed ? '' : '**FAILED** '}${r.check} |`);
  }
  const notes = result.rows.filter((r) => r.note);
  if (notes.length) console.log(`\n${notes.map((r) => `- ${r.engine}: ${r.note}`).join('\n')}`);
}

mkdirSync(`${CACHE}/peers`, { recursive: true });
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const loadBefore = load();
const ctx = await GpuContext.create();
ctx.setKernelTiers('tuned'); // timed runs use the tuned kernels from the first run on (bench:coldstart measures the tiers)
const tiles = useCachedConvTiling(ctx);
console.log(`adapter: ${describeAdapter(ctx.report)}; conv tiles ${tiles ? `tuned (${tiles})` : 'built-in defaults'}\n${threads} CPU threads; load average ${loadBefore}; engines ${engines.join(', ')}; budget ${budgetMs / 1e3} s per engine and configuration`);
const results = [];
for (const name of configs) {
  const result = await runConfig(name, ctx);
  results.push(result);
  printTable(result);
}
console.log(`\nload average before ${loadBefore}, after ${load()} (1, 5, 15 min; timings mean little when it is above ${threads})`);
const json = opt.json;
if (json) writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), argv, adapter: ctx.report, threads, loadBefore, loadAfter: load(), results }, null, 1));
ctx.device.destroy();
if (results.some((r) => r.rows.some((row) => !row.passed))) process.exitCode = 1;
