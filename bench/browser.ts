// Browser benchmark: the demo page (tools/demo-server.mjs, the library bundle) in headless
// Chromium segments a bundled sample with the bundled model, dense and pruned in the page
// (prune() on the page's device), and the same runs happen in Node (Dawn) for comparison.
// Every model is validated before it is timed: the page's first run must give the Node engine's
// detections on the same pixels. Then warm-up runs, N timed runs (medians of total and GPU time),
// and per-stage times: from GPU timestamps when the page's device has them, else from N more runs
// with { profile: true } (a submit and wait per stage).
//
//   npm run bench:browser [-- --adapter gles|swiftshader|default] [--chrome PATH] [--repeats 5]
//                         [--warmup 1] [--ratio 0.5] [--sample shapes_0] [--score-thresh 0]
//                         [--json FILE | --json -]
//
// As bench/e2e.ts, the models run at box score threshold 0 by default, so dense and pruned both
// send 100 detections through the mask head (the work the GMAC count assumes); the demo's own
// default is torchvision's 0.05.
//
// Adapters (tests/browser.ts BROWSER_ADAPTERS): 'gles' = Dawn's OpenGL ES backend on ANGLE on
// Vulkan (lavapipe on a machine without a GPU; the page asks for a compatibility-mode adapter),
// 'swiftshader' = Chromium's CPU fallback, 'default' = Chromium's own choice.

import { readFileSync, writeFileSync } from 'node:fs';
import type { Browser, Page } from 'puppeteer-core';
import { readImageFile } from '../io/image.ts';
import { parseScriptArgs } from '../io/args.ts';
import { describeAdapter, type AdapterReport } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { resizePlan } from '../engine/kernels/preprocess.ts';
import { loadMaskRCNN, type RgbImage, type SegmentResult } from '../engine/maskrcnn/model.ts';
import { STAGES, type StageName } from '../engine/maskrcnn/stages.ts';
import { prune } from '../prune/index.ts';
import { loadMaskRCNNWeights, maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors, type SafetensorsFile } from '../weights-loader/safetensors.ts';
import { startDemoServer } from '../tools/demo-server.mjs';
import { countParameters } from '../demo/session.ts';
import { BROWSER_ADAPTERS, isBrowserAdapter, launchChromium } from '../tests/browser.ts';
import { sameDetections, type DetectionLike } from './match.ts';
import { median } from './timing.ts';

const { values: opt } = parseScriptArgs({
  command: 'npm run bench:browser --',
  usage: `usage: npm run bench:browser [-- --adapter gles|swiftshader|default] [--chrome PATH] [--repeats 5]
                             [--warmup 1] [--ratio 0.5] [--sample shapes_0] [--score-thresh 0]
                             [--json FILE | --json -]   (see the header of bench/browser.ts)`,
  options: {
    adapter: { type: 'string', default: 'gles' },
    chrome: { type: 'string' },
    repeats: { type: 'number', min: 0, default: 5 },
    warmup: { type: 'number', min: 0, default: 1 },
    ratio: { type: 'number', above: 0, below: 1, default: 0.5 },
    sample: { type: 'string', default: 'shapes_0' },
    'score-thresh': { type: 'number', min: 0, default: 0 },
    json: { type: 'string' },
  },
});
const adapterName = opt.adapter;
if (!isBrowserAdapter(adapterName)) throw new Error(`--adapter ${adapterName}: use one of ${Object.keys(BROWSER_ADAPTERS).join(', ')}`);
const repeats = Math.max(1, Math.round(opt.repeats));
const warmup = Math.round(opt.warmup);
const ratio = opt.ratio;
const sample = opt.sample;
const scoreThresh = opt['score-thresh'];
const jsonOut = opt.json;

type Stages = Record<StageName, number>;
interface Run {
  totalMs: number;
  gpuMs: number;
  planMs: number;
  stagesMs: Stages | null;
  stagesSource: SegmentResult['stagesSource'];
}
interface Row {
  model: string;
  runtime: 'browser' | 'node';
  ratio: number;
  params: number;
  detections: number;
  firstRunMs: number;
  totalMs: number;
  gpuMs: number;
  stagesMs: Stages | null;
  stagesSource: SegmentResult['stagesSource'];
  samples: { totalMs: number[]; gpuMs: number[]; stagesMs: Array<Stages | null> };
}

const summarize = (r: SegmentResult): Run => ({ totalMs: r.timingsMs.total, gpuMs: r.timingsMs.gpu, planMs: r.timingsMs.plan, stagesMs: r.stagesMs, stagesSource: r.stagesSource });

/** One model's timing, whatever runs it: `segment` returns the run and (first call only) detections. */
async function timeRuns(model: string, runtime: Row['runtime'], r: number, params: number, first: Run & { detections: DetectionLike[] }, segment: (profile: boolean) => Promise<Run>): Promise<Row> {
  for (let i = 0; i < warmup; i++) await segment(false);
  const runs: Run[] = [];
  for (let i = 0; i < repeats; i++) runs.push(await segment(false));
  let staged = runs;
  if (runs[0].stagesSource !== 'gpu-timestamps') {
    staged = [];
    for (let i = 0; i < repeats; i++) staged.push(await segment(true));
  }
  const withStages = staged.filter((s) => s.stagesMs);
  const row: Row = {
    model,
    runtime,
    ratio: r,
    params,
    detections: first.detections.length,
    firstRunMs: first.totalMs,
    totalMs: median(runs.map((s) => s.totalMs)),
    gpuMs: median(runs.map((s) => s.gpuMs)),
    stagesMs: withStages.length ? (Object.fromEntries(STAGES.map((s) => [s, median(withStages.map((w) => w.stagesMs![s]))])) as Stages) : null,
    stagesSource: staged[0].stagesSource,
    samples: { totalMs: runs.map((s) => s.totalMs), gpuMs: runs.map((s) => s.gpuMs), stagesMs: staged.map((s) => s.stagesMs) },
  };
  console.log(`  ${runtime} ${model}: first run ${row.firstRunMs.toFixed(0)} ms, then total ${row.totalMs.toFixed(1)} ms, gpu ${row.gpuMs.toFixed(1)} ms (median of ${repeats})`);
  return row;
}

async function nodeRows(file: SafetensorsFile, image: RgbImage): Promise<{ rows: Row[]; reference: DetectionLike[][]; adapter: AdapterReport }> {
  // Unquantised timestamps, as bench/e2e.ts (Dawn rounds them to 65.5 us by default).
  const ctx = await GpuContext.create({ dawnFlags: ['disable-dawn-features=timestamp_quantization'] });
  ctx.setKernelTiers('tuned'); // timed runs use the tuned kernels from the first run on (bench:coldstart measures the tiers)
  const { file: pruned } = await prune(ctx, file, { ratio });
  const rows: Row[] = [];
  const reference: DetectionLike[][] = [];
  for (const [name, f, r] of [['dense', file, 0], ['pruned', pruned, ratio]] as const) {
    const model = await loadMaskRCNN(ctx, f, { boxScoreThresh: scoreThresh });
    const first = await model.segment(image);
    reference.push(first.detections);
    rows.push(await timeRuns(name, 'node', r, countParameters(f), { ...summarize(first), detections: first.detections }, async (profile) => summarize(await model.segment(image, { profile }))));
    model.destroy();
  }
  const adapter = ctx.report;
  ctx.device.destroy();
  return { rows, reference, adapter };
}

/** Adapters Dawn lists on chrome://gpu ("Dawn Info"): names the real driver behind a blank adapter info. */
async function chromeDawnAdapters(browser: Browser): Promise<string[]> {
  const tab = await browser.newPage();
  try {
    await tab.goto('chrome://gpu');
    const text = await tab.waitForFunction(
      () => {
        const t = (document.querySelector('info-view') as HTMLElement & { shadowRoot: ShadowRoot } | null)?.shadowRoot?.textContent ?? '';
        return t.includes(' backend - ') && t; // the list fills in after the page
      },
      { timeout: 20_000 },
    );
    return [...new Set(((await text.jsonValue()) as string).split('\n').map((l) => l.trim()).filter((l) => / backend - /.test(l)))];
  } catch {
    return ['(chrome://gpu did not list the Dawn adapters)'];
  } finally {
    await tab.close();
  }
}

async function browserRows(page: Page, reference: DetectionLike[][], params: number[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [i, [name, r]] of ([['dense', 0], ['pruned', ratio]] as const).entries()) {
    const first = await page.evaluate(async (rr) => {
      const s = window.maskgpuDemo;
      const info = await s.session!.setRatio(rr);
      const res = await s.session!.segment(s.image!);
      return { params: info.params, detections: res.detections, run: { totalMs: res.timingsMs.total, gpuMs: res.timingsMs.gpu, planMs: res.timingsMs.plan, stagesMs: res.stagesMs, stagesSource: res.stagesSource } };
    }, r);
    if (first.params !== params[i]) throw new Error(`${name}: the page's model has ${first.params} parameters, Node's ${params[i]}`);
    const diff = sameDetections(first.detections, reference[i]);
    if (diff) throw new Error(`${name}: the page's detections differ from the Node engine's (${diff}); not timing a wrong model`);
    console.log(`  validation, ${name}: the page's ${first.detections.length} detections equal Node's`);
    rows.push(
      await timeRuns(name, 'browser', r, first.params, { ...first.run, detections: first.detections }, (profile) =>
        page.evaluate(async (p) => {
          const s = window.maskgpuDemo;
          const res = await s.session!.segment(s.image!, { profile: p });
          return { totalMs: res.timingsMs.total, gpuMs: res.timingsMs.gpu, planMs: res.timingsMs.plan, stagesMs: res.stagesMs, stagesSource: res.stagesSource };
        }, profile),
      ),
    );
  }
  return rows;
}

function table(rows: Row[]): string {
  const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const head = ['model', 'runtime', 'params', 'detections', 'first run ms', 'total ms', 'gpu ms', ...STAGES, 'stages from'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) {
    const stages = STAGES.map((s) => (r.stagesMs ? ms(r.stagesMs[s]) : '-'));
    const source = r.stagesSource === 'gpu-timestamps' ? 'GPU timestamps' : r.stagesSource === 'cpu' ? 'CPU, per-stage submits' : '-';
    lines.push(`| ${r.model}${r.ratio ? ` ${Math.round(r.ratio * 100)} %` : ''} | ${r.runtime} | ${r.params.toLocaleString('en-US')} | ${r.detections} | ${ms(r.firstRunMs)} | ${ms(r.totalMs)} | ${ms(r.gpuMs)} | ${stages.join(' | ')} | ${source} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const weights = 'models/maskgpu-shapes.safetensors';
  const file = parseSafetensors(new Uint8Array(readFileSync(weights)), maskrcnnParseOptions);
  const image = await readImageFile(`models/samples/${sample}.png`);
  const meta = loadMaskRCNNWeights(file).meta;
  const resize = resizePlan(image.height, image.width, meta.minSize, meta.maxSize);
  const log = jsonOut === '-' ? console.error : console.log;
  log(`browser benchmark: ${weights} on ${sample}.png ${image.width}x${image.height} -> padded ${resize.paddedW}x${resize.paddedH}, pruned ratio ${ratio}, median of ${repeats} after ${warmup} warm-up`);

  const node = await nodeRows(file, image);

  const adapter = BROWSER_ADAPTERS[adapterName as keyof typeof BROWSER_ADAPTERS];
  const server = await startDemoServer({ port: 0 });
  const browser = await launchChromium(adapter.args, { executablePath: opt.chrome });
  try {
    const page = await browser.newPage();
    const q = new URLSearchParams({ sample, autorun: '0', ...(adapter.featureLevel ? { featureLevel: adapter.featureLevel } : {}), boxScoreThresh: String(scoreThresh) });
    await page.goto(`${server.url}?${q}`);
    await page.waitForFunction(() => window.maskgpuDemo?.session || window.maskgpuDemo?.error, { timeout: 120_000 });
    const error = await page.evaluate(() => window.maskgpuDemo.error);
    if (error) throw new Error(`the demo page failed: ${error}`);
    const pageAdapter = await page.evaluate(() => window.maskgpuDemo.session!.ctx.report);
    // Timed runs use the tuned kernels from the first run on, as the Node side does (bench:coldstart measures the tiers).
    await page.evaluate(() => window.maskgpuDemo.session!.ctx.setKernelTiers('tuned'));
    const chromium = await browser.version();
    const dawnAdapters = await chromeDawnAdapters(browser);
    log(`browser: ${chromium}, --adapter ${adapterName} (${adapter.args.join(' ') || 'no extra flags'}${adapter.featureLevel ? `, featureLevel ${adapter.featureLevel}` : ''}): ${describeAdapter(pageAdapter)}`);
    log(`  Dawn's adapters on chrome://gpu: ${dawnAdapters.join('; ')}`);
    log(`node: ${describeAdapter(node.adapter)}`);
    const rows = [...(await browserRows(page, node.reference, node.rows.map((r) => r.params))), ...node.rows];
    const result = {
      date: new Date().toISOString(),
      weights,
      image: { sample, width: image.width, height: image.height, padded: [resize.paddedH, resize.paddedW] },
      options: { repeats, warmup, ratio, boxScoreThresh: scoreThresh },
      browser: { chromium, adapter: adapterName, flags: adapter.args, featureLevel: adapter.featureLevel ?? 'core', report: pageAdapter, dawnAdapters },
      node: { report: node.adapter },
      rows,
    };
    if (jsonOut === '-') console.log(JSON.stringify(result, null, 2));
    else {
      console.log(`\n${table(rows)}`);
      if (jsonOut) {
        writeFileSync(jsonOut, JSON.stringify(result, null, 2));
        console.log(`\nwrote ${jsonOut}`);
      }
    }
  } finally {
    await browser.close();
    await server.close();
  }
}

await main();
