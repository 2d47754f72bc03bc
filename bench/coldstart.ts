// Time to first result: cold (empty caches) against warm, for the command line (process to
// process), the library (in one process) and the demo (headless Chromium), plus what the driver
// spends compiling each kernel family, in Node ('kernels') and in Chromium ('browser-kernels'). Cold = a fresh XDG_CACHE_HOME (Mesa's shader cache,
// maskgpu's kernel record and tile cache all live there) and, for Chromium, a fresh profile.
//
//   npm run bench:coldstart [-- --parts cli,library,demo,kernels,browser-kernels] [--model bundled|r50]
//                           [--repeats 3] [--baseline] [--min-size N --max-size N] [--json FILE]
//                           [--adapter gles|swiftshader]
//
// --model r50: the full ResNet-50-FPN structure (seeded random weights, 91 classes, written to a
// temporary file) at --min-size 320 --max-size 512 unless given. --baseline also times the
// previous behaviour, `--kernels tuned` (the tuned kernels compiled at first use), cold and warm.
// --adapter: Chromium's WebGPU adapter for the demo and browser-kernels parts (tests/browser.ts):
// 'gles' (default; ANGLE -> Vulkan -> lavapipe, compatibility mode) or 'swiftshader'.
// Benchmarks, not tests: nothing fails on a number. Run it on a quiet machine.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseScriptArgs } from '../io/args.ts';
import { readImageFile } from '../io/image.ts';
import { GpuContext, type KernelSpec, type KernelTiers } from '../engine/gpu.ts';
import { loadMaskRCNN } from '../engine/maskrcnn/model.ts';
import { compileKernels } from '../engine/tiers.ts';
import { describeAdapter } from '../engine/device.ts';
import { serializeSafetensors } from '../weights-loader/safetensors.ts';
import { syntheticMaskRCNNFile } from '../tests/synthetic-model.ts';
import { median } from './timing.ts';

const PARTS = ['cli', 'library', 'demo', 'kernels', 'browser-kernels'];
const USAGE = `usage: npm run bench:coldstart [-- --parts ${PARTS.join(',')}] [--model bundled|r50] [--repeats 3]
                                [--baseline] [--min-size N --max-size N] [--json FILE] [--adapter gles|swiftshader]
                                (see the header of bench/coldstart.ts)`;
const { values: opt } = parseScriptArgs({
  command: 'npm run bench:coldstart --',
  usage: USAGE,
  options: {
    parts: { type: 'string', default: 'cli,library,demo,kernels' },
    model: { type: 'string', choices: ['bundled', 'r50'], default: 'bundled' },
    repeats: { type: 'number', integer: true, min: 1, default: 3 },
    baseline: { type: 'boolean' },
    'min-size': { type: 'number', integer: true, min: 1 },
    'max-size': { type: 'number', integer: true, min: 1 },
    json: { type: 'string' },
    adapter: { type: 'string', choices: ['gles', 'swiftshader'], default: 'gles' },
    // Internal: the in-process measurements run in a child with the cold environment.
    child: { type: 'string', choices: ['library', 'kernels', 'specs'] },
    'specs-out': { type: 'string' },
    weights: { type: 'string' },
    image: { type: 'string' },
    tiers: { type: 'string', choices: ['tiered', 'tuned', 'quick'] },
  },
});

const BIN = 'bin/maskgpu.mjs';
const adapter = opt.adapter as 'gles' | 'swiftshader';
const ADAPTER_NAMES = { gles: 'gles adapter: ANGLE -> Vulkan -> lavapipe', swiftshader: 'SwiftShader adapter' };
const LOADER = ['--import', './tools/register.mjs'];
const r0 = (x: number) => Math.round(x);

if (opt.child) {
  await child(opt.child);
  process.exit(0);
}

const parts = new Set(opt.parts.split(',').map((s) => s.trim()));
for (const p of parts) if (!PARTS.includes(p)) throw new Error(`--parts: unknown part '${p}' (${PARTS.join(', ')})`);
const work = mkdtempSync(join(tmpdir(), 'maskgpu-coldstart-'));
const sizes = opt.model === 'r50' ? { min: opt['min-size'] ?? 320, max: opt['max-size'] ?? 512 } : { min: opt['min-size'], max: opt['max-size'] };
const image = opt.model === 'r50' ? 'models/samples/shapes_1.png' : 'models/samples/shapes_2.png';
let weights: string | undefined;
if (opt.model === 'r50') {
  weights = join(work, 'r50.safetensors');
  const file = syntheticMaskRCNNFile({ widthDiv: 1, numClasses: 91, seed: 7 });
  writeFileSync(weights, serializeSafetensors(file.tensors, file.metadata));
}
const sizeArgs = [...(sizes.min ? ['--min-size', String(sizes.min)] : []), ...(sizes.max ? ['--max-size', String(sizes.max)] : [])];
const results: Record<string, unknown> = { model: opt.model, image, sizes, date: new Date().toISOString() };

const ctx0 = await GpuContext.create();
results.adapter = describeAdapter(ctx0.report);
ctx0.device.destroy();
console.log(`adapter: ${results.adapter}\nmodel: ${opt.model} on ${image}${sizes.min ? ` at min ${sizes.min} / max ${sizes.max}` : ''}; work dir ${work}`);

try {
  if (parts.has('cli')) results.cli = await cliPart();
  if (parts.has('library')) results.library = await libraryPart();
  if (parts.has('demo')) results.demo = await demoPart();
  if (parts.has('kernels')) results.kernels = await kernelsPart();
  if (parts.has('browser-kernels')) results.browserKernels = await browserKernelsPart();
} finally {
  rmSync(work, { recursive: true, force: true });
}
if (opt.json) writeFileSync(opt.json, JSON.stringify(results, null, 2) + '\n');

// ---------------------------------------------------------------------------------------------

function freshCache(): string {
  return mkdtempSync(join(work, 'cache-'));
}

function exec(cmd: string, args: string[], env: Record<string, string>): Promise<{ ms: number; out: string; err: string; code: number }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const c = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('error', reject);
    c.on('close', (code) => resolve({ ms: performance.now() - t, out, err, code: code ?? -1 }));
  });
}

/** One `maskgpu segment --verbose` (as the README's main job runs it), timed process to process. */
async function segmentOnce(cache: string, extra: string[] = []): Promise<{ ms: number; background?: number; stdout: string; pipelines: number; kernels: string }> {
  const out = join(work, 'out');
  const r = await exec(process.execPath, [BIN, 'segment', image, '--out', out, '--force', '--verbose', ...(weights ? ['--weights', weights] : []), ...sizeArgs, ...extra], { XDG_CACHE_HOME: cache });
  if (r.code !== 0) throw new Error(`maskgpu segment failed (${r.code}): ${r.err}`);
  const pid = /\(pid (\d+),/.exec(r.err)?.[1];
  const k = /  kernels: ([^,]+), (\d+) pipelines/.exec(r.out);
  return { ms: r.ms, background: pid ? Number(pid) : undefined, stdout: r.out.trim().split('\n').find((l) => l.includes('detections')) ?? '', pipelines: Number(k?.[2] ?? NaN), kernels: k?.[1] ?? '?' };
}

async function waitForExit(pid: number): Promise<number> {
  const t = performance.now();
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return performance.now() - t;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function cliPart() {
  console.log('\n== command line, process to process (maskgpu segment) ==');
  const cache = freshCache();
  const cold = await segmentOnce(cache);
  console.log(`cold (empty caches, --kernels tiered): ${r0(cold.ms)} ms, ${cold.pipelines} pipelines (${cold.kernels})  ${cold.stdout}`);
  const bgWait = cold.background ? await waitForExit(cold.background) : 0;
  const log = existsSync(join(cache, 'maskgpu/compile-kernels.log')) ? readFileSync(join(cache, 'maskgpu/compile-kernels.log'), 'utf8') : '';
  const bg = /compiled (\d+) kernels in ([\d.]+) s/.exec(log);
  console.log(`background compile: ${bg ? `${bg[1]} kernels in ${bg[2]} s` : 'none'} (waited ${r0(bgWait)} ms after the cold run returned)`);
  const warm: number[] = [];
  let last = cold;
  for (let i = 0; i < opt.repeats; i++) warm.push((last = await segmentOnce(cache)).ms);
  const w = median(warm);
  console.log(`warm: median ${r0(w)} ms of ${warm.map(r0).join(', ')}, ${last.pipelines} pipelines (${last.kernels})  -> cold/warm ${(cold.ms / w).toFixed(2)}x`);
  const result: Record<string, unknown> = { coldMs: cold.ms, coldPipelines: cold.pipelines, warmMs: warm, warmMedianMs: w, warmPipelines: last.pipelines, ratio: cold.ms / w, background: bg ? { kernels: Number(bg[1]), seconds: Number(bg[2]) } : null };
  if (opt.baseline) {
    const base = freshCache();
    const bc = await segmentOnce(base, ['--kernels', 'tuned', '--no-background-compile']);
    const bw: number[] = [];
    for (let i = 0; i < opt.repeats; i++) bw.push((await segmentOnce(base, ['--kernels', 'tuned', '--no-background-compile'])).ms);
    console.log(`baseline --kernels tuned: cold ${r0(bc.ms)} ms (${bc.pipelines} pipelines), warm median ${r0(median(bw))} ms of ${bw.map(r0).join(', ')} -> ${(bc.ms / median(bw)).toFixed(2)}x`);
    result.baseline = { coldMs: bc.ms, warmMs: bw, warmMedianMs: median(bw), ratio: bc.ms / median(bw) };
  }
  return result;
}

async function libraryPart() {
  console.log('\n== library, in one process (GpuContext.create, loadMaskRCNN, segment) ==');
  const modes: KernelTiers[] = opt.baseline ? ['tiered', 'tuned'] : ['tiered'];
  const out: Record<string, unknown> = {};
  for (const tiers of modes) {
    const r = await exec(process.execPath, [...LOADER, 'bench/coldstart.ts', '--child', 'library', '--image', image, '--tiers', tiers, ...(weights ? ['--weights', weights] : []), ...sizeArgs], {
      XDG_CACHE_HOME: freshCache(),
    });
    if (r.code !== 0) throw new Error(`library child failed: ${r.err}`);
    const j = JSON.parse(r.out.trim().split('\n').pop()!);
    console.log(
      `${tiers}: load ${r0(j.loadMs)} ms, first segment ${r0(j.firstMs)} ms (${j.firstPipelines} pipelines), second ${r0(j.secondMs)} ms; ` +
        `tuned compile ${j.compile.compiled} kernels in ${r0(j.compile.ms)} ms (${j.compile.where}); next ${r0(j.afterMs)} ms, warm median ${r0(j.warmMs)} ms ` +
        `-> first/warm ${(j.firstMs / j.warmMs).toFixed(2)}x; results equal: ${j.same}`,
    );
    out[tiers] = j;
  }
  return out;
}

async function demoPart() {
  console.log(`\n== demo page in headless Chromium (${ADAPTER_NAMES[adapter]}) ==`);
  if (opt.model !== 'bundled') {
    console.log('(the demo runs the bundled model only: skipped)');
    return null;
  }
  const { startDemoServer } = await import('../tools/demo-server.mjs');
  const server = await startDemoServer({ port: 0 });
  const out: Record<string, unknown> = {};
  try {
    for (const kernels of opt.baseline ? ['tiered', 'tuned'] : ['tiered']) out[kernels] = await demoRuns(server.url, kernels);
  } finally {
    await server.close();
  }
  return out;
}

async function demoRuns(server: string, kernels: string) {
  const { BROWSER_ADAPTERS, launchChromium } = await import('../tests/browser.ts');
  const cache = freshCache();
  const profile = mkdtempSync(join(work, 'chromium-'));
  const url = `${server}?${adapter === 'gles' ? 'featureLevel=compatibility&' : ''}sample=shapes_2&kernels=${kernels}`;
  console.log(`-- ?kernels=${kernels}`);
  const timeFirst = async () => {
    // The GPU process's Mesa cache: an environment of its own (not this process's).
    const browser = await launchChromium([...BROWSER_ADAPTERS[adapter].args, `--user-data-dir=${profile}`], { env: { ...process.env, XDG_CACHE_HOME: cache } });
    try {
      const tab = await browser.newPage();
      const t = performance.now();
      await tab.goto(url);
      await tab.waitForFunction(() => !!window.maskgpuDemo && (!!window.maskgpuDemo.error || window.maskgpuDemo.runs >= 1), { timeout: 600_000, polling: 50 });
      const ms = performance.now() - t;
      const error = await tab.evaluate(() => window.maskgpuDemo.error);
      if (error) throw new Error(`the demo shows an error: ${error}`);
      const segmentMs = await tab.evaluate(() => window.maskgpuDemo.result!.timingsMs.total);
      // The page compiles the tuned kernels in the background after its first run: wait for it.
      const t2 = performance.now();
      const compile = await tab.evaluate(() => window.maskgpuDemo.session!.compileTunedKernels());
      return { ms, segmentMs, compile, compileWaitMs: performance.now() - t2 };
    } finally {
      await browser.close();
    }
  };
  {
    const cold = await timeFirst();
    console.log(`cold (fresh profile and Mesa cache): first result ${r0(cold.ms)} ms after navigation (segment ${r0(cold.segmentMs)} ms); background compile ${cold.compile.compiled} kernels (waited ${r0(cold.compileWaitMs)} ms more)`);
    const warm: Array<Awaited<ReturnType<typeof timeFirst>>> = [];
    for (let i = 0; i < opt.repeats; i++) warm.push(await timeFirst());
    const w = median(warm.map((x) => x.ms));
    console.log(`warm (same profile and cache, a new browser): first result median ${r0(w)} ms of ${warm.map((x) => r0(x.ms)).join(', ')} (segment ${warm.map((x) => r0(x.segmentMs)).join(', ')} ms) -> cold/warm ${(cold.ms / w).toFixed(2)}x`);
    return { coldMs: cold.ms, coldSegmentMs: cold.segmentMs, background: cold.compile, warmMs: warm.map((x) => x.ms), warmSegmentMs: warm.map((x) => x.segmentMs), warmMedianMs: w };
  }
}

async function kernelsPart() {
  console.log('\n== driver compile time per kernel family (empty cache, each kernel compiled alone) ==');
  const out: Record<string, unknown> = {};
  for (const tiers of ['tuned', 'quick'] as const) {
    const r = await exec(process.execPath, [...LOADER, 'bench/coldstart.ts', '--child', 'kernels', '--image', image, '--tiers', tiers, ...(weights ? ['--weights', weights] : []), ...sizeArgs], {
      XDG_CACHE_HOME: freshCache(),
    });
    if (r.code !== 0) throw new Error(`kernels child failed: ${r.err}`);
    const rows = JSON.parse(r.out.trim().split('\n').pop()!) as Array<{ family: string; label: string; ms: number }>;
    printFamilies(`plan with ${tiers} kernels`, rows);
    out[tiers] = { total: rows.reduce((s, x) => s + x.ms, 0), rows };
  }
  return out;
}

async function browserKernelsPart() {
  console.log(`\n== driver compile time per kernel in headless Chromium (${ADAPTER_NAMES[adapter]}; empty caches, each kernel compiled alone) ==`);
  if (opt.model !== 'bundled') console.log('(kernels of the r50 plan)');
  const { build } = await import('esbuild');
  const { BROWSER_ADAPTERS, launchChromium, serve } = await import('../tests/browser.ts');
  const page = await build({ entryPoints: ['bench/compile-page.ts'], bundle: true, format: 'esm', platform: 'browser', write: false, loader: { '.wgsl': 'text' }, logLevel: 'warning' });
  const out: Record<string, unknown> = {};
  for (const tiers of ['quick', 'tuned'] as const) {
    const specsFile = join(work, `specs-${tiers}.json`);
    const r = await exec(process.execPath, [...LOADER, 'bench/coldstart.ts', '--child', 'specs', '--specs-out', specsFile, '--image', image, '--tiers', tiers, ...(weights ? ['--weights', weights] : []), ...sizeArgs], {});
    if (r.code !== 0) throw new Error(`specs child failed: ${r.err}`);
    const server = await serve({
      '/': ['text/html; charset=utf-8', '<!doctype html><script type="module" src="/page.js"></script>'],
      '/page.js': ['text/javascript', page.outputFiles[0].text],
      '/specs.json': ['application/json', readFileSync(specsFile, 'utf8')],
    });
    const browser = await launchChromium([...BROWSER_ADAPTERS[adapter].args, `--user-data-dir=${mkdtempSync(join(work, 'chromium-'))}`], {
      env: { ...process.env, XDG_CACHE_HOME: freshCache() },
    });
    try {
      const tab = await browser.newPage();
      await tab.goto(`${server.url}/${adapter === 'gles' ? '?featureLevel=compatibility' : ''}`);
      await tab.waitForFunction(() => !!window.compileTimes, { timeout: 600_000, polling: 100 });
      const result = await tab.evaluate(() => window.compileTimes!);
      if ('error' in result) throw new Error(`compile page: ${result.error}`);
      const specs = JSON.parse(readFileSync(specsFile, 'utf8')) as KernelSpec[];
      const rows = result.rows.map((row, i) => ({ family: family(specs[i]), label: row.label, ms: row.ms }));
      printFamilies(`plan with ${tiers} kernels`, rows);
      out[tiers] = { total: rows.reduce((s, x) => s + x.ms, 0), rows };
    } finally {
      await browser.close();
      await server.close();
    }
  }
  return out;
}

function printFamilies(what: string, rows: Array<{ family: string; ms: number }>): void {
  const families = new Map<string, { n: number; ms: number }>();
  for (const row of rows) {
    const f = families.get(row.family) ?? { n: 0, ms: 0 };
    f.n++;
    f.ms += row.ms;
    families.set(row.family, f);
  }
  const total = rows.reduce((s, x) => s + x.ms, 0);
  console.log(`-- ${what}: ${rows.length} pipelines, ${(total / 1000).toFixed(1)} s of compiling in all`);
  for (const [name, f] of [...families].sort((a, b) => b[1].ms - a[1].ms)) console.log(`  ${name.padEnd(34)} ${String(f.n).padStart(3)} x  ${(f.ms / 1000).toFixed(2).padStart(6)} s  (${r0(f.ms / f.n)} ms each)`);
}

// ---- children (run in the cold environment their parent set up) ------------------------------

async function loadModel(tiers: KernelTiers) {
  const ctx = await GpuContext.create();
  ctx.setKernelTiers(tiers);
  const bytes = new Uint8Array(readFileSync(opt.weights ?? 'models/maskgpu-shapes.safetensors'));
  const model = await loadMaskRCNN(ctx, bytes, { minSize: opt['min-size'], maxSize: opt['max-size'] });
  return { ctx, model };
}

async function child(kind: string) {
  const tiers = (opt.tiers ?? 'tiered') as KernelTiers;
  const img = await readImageFile(opt.image!);
  if (kind === 'library') {
    const t0 = performance.now();
    const { ctx, model } = await loadModel(tiers);
    model.backgroundCompile = false; // started by hand below, to time it on its own
    const t1 = performance.now();
    const a = await model.segment(img);
    const t2 = performance.now();
    const firstPipelines = ctx.pipelines.count;
    await model.segment(img);
    const t3 = performance.now();
    const compile = await model.compileTunedKernels();
    const t4 = performance.now();
    await model.segment(img);
    const t5 = performance.now();
    const warm: number[] = [];
    let last = a;
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      last = await model.segment(img);
      warm.push(performance.now() - t);
    }
    const same = JSON.stringify(a.detections) === JSON.stringify(last.detections);
    console.log(JSON.stringify({ loadMs: t1 - t0, firstMs: t2 - t1, firstPipelines, secondMs: t3 - t2, compile, compileMs: t4 - t3, afterMs: t5 - t4, warmMs: median(warm), same }));
    return;
  }
  // kernels: the plan's pipelines are created (not compiled: lavapipe compiles at first dispatch),
  // then each is compiled alone on a second device and timed. specs: the same plan's kernel specs
  // written to --specs-out, for the browser.
  const { ctx, model } = await loadModel(tiers);
  await model.prepare(img.height, img.width);
  const specs = ctx.kernelSpecs();
  if (kind === 'specs') {
    writeFileSync(opt['specs-out']!, JSON.stringify(specs));
    return;
  }
  const target = await GpuContext.create();
  const rows: Array<{ family: string; label: string; ms: number }> = [];
  for (const spec of specs) {
    const t = performance.now();
    await compileKernels(target, [spec]);
    rows.push({ family: family(spec), label: spec.label, ms: performance.now() - t });
  }
  console.log(JSON.stringify(rows));
}

function family(spec: KernelSpec): string {
  const shaders = readdirSync('shaders')
    .filter((f) => f.endsWith('.wgsl'))
    .map((f) => ({ name: f.replace(/\.wgsl$/, ''), text: readFileSync(join('shaders', f), 'utf8') }));
  const shader = shaders.find((s) => spec.source === s.text || spec.source.endsWith(s.text.slice(-2000)))?.name ?? spec.label;
  const c = spec.consts ?? {};
  if (shader === 'conv2d') {
    const kind = c.DYNAMIC_TAPS ? 'any kernel (taps from params)' : Number(c.SHUFFLE) > 1 ? 'transposed' : `${c.KH}x${c.KW}`;
    return `conv2d ${kind}, tile ${c.TM}x${c.TN}`;
  }
  if (shader === 'matmul') return `matmul, tile ${c.TM}x${c.TN}`;
  return `${shader}${spec.entryPoint && spec.entryPoint !== 'main' ? `.${spec.entryPoint}` : ''}`;
}
