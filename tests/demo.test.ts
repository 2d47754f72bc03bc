// The demo page end to end in headless Chromium (tools/demo-server.mjs serving the library bundle,
// the page and models/): it segments a bundled sample with the bundled model, and the detections
// must equal the Node engine's (Dawn) on the same pixels; the score slider re-filters without a
// run; pruning in the page shrinks the model and matches prune() in Node; the weights come back
// from the Cache API (and a damaged cached copy is replaced); errors are shown in the page.
// Chromium uses the 'gles' adapter (lavapipe through ANGLE, 15-25x faster than SwiftShader) unless
// MASKGPU_BROWSER_ADAPTER says otherwise. Screenshots go to tests/artifacts/.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, readFileSync } from 'node:fs';
import type { Page } from 'puppeteer-core';
import { readImageFile } from '../io/image.ts';
import { describeAdapter } from '../engine/device.ts';
import { loadMaskRCNN, type Detection } from '../engine/maskrcnn/model.ts';
import { compareDetections, SAME_DETECTIONS } from '../eval/match.ts';
import { prune } from '../prune/index.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors } from '../weights-loader/safetensors.ts';
import { startDemoServer } from '../tools/demo-server.mjs';
import { countParameters } from '../demo/session.ts';
import { BROWSER_ADAPTERS, isBrowserAdapter, launchChromium } from './browser.ts';
import { sharedContext } from './harness.ts';

const SAMPLE = 'shapes_0'; // the smallest bundled sample (173x290, resized to 305x512)
const RATIO = 0.5;
const WEIGHTS = 'models/maskgpu-shapes.safetensors';
const ARTIFACTS = 'tests/artifacts';
const adapterName = process.env.MASKGPU_BROWSER_ADAPTER ?? 'gles';
if (!isBrowserAdapter(adapterName)) throw new Error(`MASKGPU_BROWSER_ADAPTER=${adapterName}: use one of ${Object.keys(BROWSER_ADAPTERS).join(', ')}`);
const adapter = BROWSER_ADAPTERS[adapterName];

type Det = Pick<Detection, 'box' | 'label' | 'score' | 'mask'>;

/** FNV-1a over the RGB bytes (RGBA input skips alpha): the page and Node must see the same pixels. */
function rgbHash(data: ArrayLike<number>, channels: 3 | 4): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) {
    if (channels === 4 && i % 4 === 3) continue;
    h = Math.imul(h ^ data[i], 0x01000193) >>> 0;
  }
  return h;
}

/** The page's detections against Node's, in order, with the benchmarks' gate (eval/match.ts); prints the worst values. */
function assertSameDetections(page: Det[], node: Det[], what: string): void {
  const c = compareDetections(page, node, SAME_DETECTIONS, `${what}: page vs Node`);
  console.log(`    ${c.report}`);
  assert.ok(c.ok, c.report);
}

interface Context {
  server: { url: string; close(): Promise<void> };
  browser: Awaited<ReturnType<typeof launchChromium>>;
  tab: Page;
  warnings: string[];
  node: { dense: Det[]; pruned: Det[]; denseParams: number; prunedParams: number; pixels: number };
}

const test = suite<Context>('demo page');

test.before(async (c) => {
  const t0 = Date.now();
  // Node reference on Dawn: the dense model and prune() at RATIO, on the pixels the CLI decodes.
  const ctx = await sharedContext();
  const file = parseSafetensors(new Uint8Array(readFileSync(WEIGHTS)), maskrcnnParseOptions);
  const image = await readImageFile(`models/samples/${SAMPLE}.png`);
  const dense = await loadMaskRCNN(ctx, file);
  const denseResult = await dense.segment(image);
  dense.destroy();
  const { file: prunedFile, report } = await prune(ctx, file, { ratio: RATIO });
  const pruned = await loadMaskRCNN(ctx, prunedFile);
  const prunedResult = await pruned.segment(image);
  pruned.destroy();
  assert.is(countParameters(file), report.summary.params.before, 'the demo counts parameters as the pruning report does');
  assert.is(countParameters(prunedFile), report.summary.params.after);
  c.node = { dense: denseResult.detections, pruned: prunedResult.detections, denseParams: report.summary.params.before, prunedParams: report.summary.params.after, pixels: rgbHash(image.data, 3) };
  console.log(`    Node (${describeAdapter(ctx.report)}): ${denseResult.detections.length} dense, ${prunedResult.detections.length} pruned detections in ${Date.now() - t0} ms`);

  c.server = await startDemoServer({ port: 0 });
  c.browser = await launchChromium(adapter.args);
  c.tab = await c.browser.newPage();
  await c.tab.setViewport({ width: 1400, height: 900 });
  c.warnings = [];
  c.tab.on('console', (m) => m.type() === 'warn' && c.warnings.push(m.text()));
  mkdirSync(ARTIFACTS, { recursive: true });
});

test.after(async (c) => {
  await c.browser?.close();
  await c.server?.close();
});

function pageUrl(c: Context, params: Record<string, string>): string {
  const q = new URLSearchParams({ ...params, ...(adapter.featureLevel ? { featureLevel: adapter.featureLevel } : {}) });
  return `${c.server.url}?${q}`;
}

/** Waits until the page finished `runs` segment calls (or the session loaded, for 0) and is idle. */
async function settled(tab: Page, runs: number): Promise<void> {
  await tab.waitForFunction(
    (n) => {
      const s = window.maskgpuDemo;
      return !!s && (!!s.error || (!!s.session && !s.busy && s.runs >= n));
    },
    { timeout: 300_000, polling: 100 },
    runs,
  );
  const error = await tab.evaluate(() => window.maskgpuDemo.error);
  if (error) throw new Error(`the page shows an error: ${error}`);
}

const pageDetections = (tab: Page) =>
  tab.evaluate(() => window.maskgpuDemo.result!.detections.map(({ box, label, score, mask }) => ({ box, label, score, mask })));

test('segments a bundled sample like the Node engine', async (c) => {
  const t0 = Date.now();
  await c.tab.goto(pageUrl(c, { sample: SAMPLE }));
  await settled(c.tab, 1);
  const info = await c.tab.evaluate(() => {
    const s = window.maskgpuDemo;
    const d = s.image!.data;
    let h = 0x811c9dc5; // rgbHash, inlined: this runs in the page
    for (let i = 0; i < d.length; i++) if (i % 4 !== 3) h = Math.imul(h ^ d[i], 0x01000193) >>> 0;
    return { hash: h, ms: s.result!.timingsMs, adapter: document.querySelector('#adapter dd')!.textContent, params: document.getElementById('model-info')!.dataset.params };
  });
  console.log(`    page (${info.adapter}): first run ${info.ms.total.toFixed(0)} ms (plan ${info.ms.plan.toFixed(0)}), ${Date.now() - t0} ms with page load`);
  assert.is(info.hash, c.node.pixels, 'the page decodes the PNG to the same pixels as Node');
  assert.is(Number(info.params), c.node.denseParams, 'dense parameter count shown');
  assertSameDetections(await pageDetections(c.tab), c.node.dense, 'dense');
  await c.tab.screenshot({ path: `${ARTIFACTS}/demo.png` });
});

test('the score threshold re-filters the drawing without re-running', async (c) => {
  await c.tab.focus('#score');
  for (let i = 0; i < 40; i++) await c.tab.keyboard.press('ArrowRight'); // 0.50 -> 0.90
  const s = await c.tab.evaluate(() => ({ runs: window.maskgpuDemo.runs, shown: window.maskgpuDemo.shown, value: (document.getElementById('score') as HTMLInputElement).value, rows: document.querySelectorAll('#detections tbody tr').length }));
  assert.is(s.value, '0.9');
  assert.is(s.runs, 1, 'no new segment run');
  const want = c.node.dense.filter((d) => d.score >= 0.9).length;
  assert.ok(want > 0 && want < c.node.dense.length, 'the threshold splits the detections');
  assert.is(s.shown, want, 'detections drawn at 0.9');
  assert.is(s.rows, want, 'rows in the detections table');
  for (let i = 0; i < 40; i++) await c.tab.keyboard.press('ArrowLeft');
});

test(`pruning ${RATIO * 100} % in the page shrinks the model and matches prune() in Node`, async (c) => {
  await c.tab.focus('#ratio');
  for (let i = 0; i < Math.round(RATIO / 0.05); i++) await c.tab.keyboard.press('ArrowRight'); // step 0.05
  await c.tab.focus('#prune');
  const t0 = Date.now();
  await c.tab.keyboard.press('Enter');
  await settled(c.tab, 2);
  const info = await c.tab.evaluate(() => ({
    params: Number(document.getElementById('model-info')!.dataset.params),
    text: document.getElementById('model-info')!.textContent,
    pruneMs: window.maskgpuDemo.session!.info.pruneMs!,
    ms: window.maskgpuDemo.result!.timingsMs.total,
  }));
  console.log(`    page: pruned in ${info.pruneMs.toFixed(0)} ms, ran in ${info.ms.toFixed(0)} ms (${Date.now() - t0} ms in all)`);
  assert.ok(info.params < c.node.denseParams, 'the parameter count shown decreased');
  assert.is(info.params, c.node.prunedParams, 'parameters as prune() in Node reports');
  assert.match(info.text!, /Compression rate\d/);
  assertSameDetections(await pageDetections(c.tab), c.node.pruned, 'pruned');
  assert.ok(c.node.pruned.length > 0);
  await c.tab.screenshot({ path: `${ARTIFACTS}/demo-pruned.png` });
});

test('weights come from the Cache API on reload; a damaged cached copy is replaced', async (c) => {
  const url = pageUrl(c, { autorun: '0' });
  await c.tab.goto(url);
  await settled(c.tab, 0);
  assert.ok(await c.tab.evaluate(() => window.maskgpuDemo.session!.weightsFromCache), 'second load reads the cache');

  await c.tab.evaluate(async (name) => {
    const cache = await caches.open('maskgpu-weights');
    await cache.put(name, new Response(new Uint8Array(64).fill(7)));
  }, WEIGHTS);
  c.warnings.length = 0;
  await c.tab.goto(url);
  await settled(c.tab, 0);
  assert.not.ok(await c.tab.evaluate(() => window.maskgpuDemo.session!.weightsFromCache), 'the damaged copy is not used');
  assert.ok(c.warnings.some((w) => /cached copy of .*maskgpu-shapes\.safetensors is damaged/.test(w)), `a warning names the damage (got: ${c.warnings.join(' | ')})`);
  const cachedBytes = await c.tab.evaluate(async (name) => (await (await caches.match(name))!.arrayBuffer()).byteLength, WEIGHTS);
  assert.is(cachedBytes, readFileSync(WEIGHTS).length, 'the cache holds the good file again');
});

test('errors are shown in the page: bad address, no WebGPU, weights not found, not an image', async (c) => {
  const errorText = async (tab: Page) => {
    await tab.waitForSelector('#error:not([hidden])', { timeout: 60_000 });
    assert.is(await tab.evaluate(() => document.body.dataset.state), 'error');
    return tab.$eval('#error', (e) => e.textContent!);
  };
  // A fresh browser context: no cached weights, so the failed download below really happens.
  const fresh = await c.browser.createBrowserContext();
  try {
    const bad = await fresh.newPage();
    await bad.goto(pageUrl(c, { sample: 'nope' }));
    assert.match(await errorText(bad), /sample=nope: no such sample/);

    const noGpu = await fresh.newPage();
    await noGpu.evaluateOnNewDocument(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    await noGpu.goto(pageUrl(c, { autorun: '0' }));
    assert.match(await errorText(noGpu), /navigator\.gpu/);

    const noWeights = await fresh.newPage();
    await noWeights.setRequestInterception(true);
    noWeights.on('request', (r) => (r.url().endsWith(WEIGHTS) ? r.respond({ status: 404, body: 'not found' }) : r.continue()));
    await noWeights.goto(pageUrl(c, { autorun: '0' }));
    assert.match(await errorText(noWeights), /could not download weights from .*maskgpu-shapes\.safetensors: HTTP 404/);
  } finally {
    await fresh.close();
  }

  await c.tab.goto(pageUrl(c, { autorun: '0' }));
  await settled(c.tab, 0);
  const input = await c.tab.$('input#file');
  await input!.uploadFile('package.json');
  assert.match(await errorText(c.tab), /could not decode 'package\.json'.*not an image/);
});

test.run();
