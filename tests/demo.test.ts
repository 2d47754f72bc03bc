// The demo page end to end in headless Chromium (tools/demo-server.mjs serving the library bundle,
// the page, models/ and a second model): it segments a bundled sample with the bundled model, and
// the detections must equal the Node engine's (Dawn) on the same pixels; the score slider
// re-filters without a run; pruning in the page shrinks the model and matches prune() in Node; the
// pruned weights the page offers for download load in the Node CLI and give the page's detections;
// the weights come back from the Cache API (and a damaged cached copy is replaced); another model
// (the golden test model, its classes renamed in its metadata) loads through the file input and
// through ?weights=URL from another origin (CORS) and segments like the Node engine; wrong weights
// files (not safetensors, not Mask R-CNN, truncated and dropped) are refused in the page while the
// bundled model keeps working; errors are shown in the page.
// Chromium uses the 'gles' adapter (lavapipe through ANGLE, 15-25x faster than SwiftShader) unless
// MASKGPU_BROWSER_ADAPTER says otherwise. Screenshots go to tests/artifacts/.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'puppeteer-core';
import { readImageFile } from '../io/image.ts';
import { describeAdapter } from '../engine/device.ts';
import { loadMaskRCNN, type Detection } from '../engine/maskrcnn/model.ts';
import { compareDetections, SAME_DETECTIONS } from '../eval/match.ts';
import { prune } from '../prune/index.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors, serializeSafetensors } from '../weights-loader/safetensors.ts';
import { startDemoServer } from '../tools/demo-server.mjs';
import { countParameters } from '../demo/session.ts';
import { BROWSER_ADAPTERS, isBrowserAdapter, launchChromium } from './browser.ts';
import { sharedContext } from './harness.ts';

const SAMPLE = 'shapes_0'; // the smallest bundled sample (173x290, resized to 305x512)
const RATIO = 0.5;
const WEIGHTS = 'models/maskgpu-shapes.safetensors';
/** The second model: the golden test model (6 classes, min/max size 256/400) with renamed classes. */
const GOLDEN_WEIGHTS = 'tests/fixtures/golden/model.safetensors';
const GOLDEN_IMAGE = 'tests/fixtures/golden/image_0.png'; // the bundled samples give it no detections
const CUSTOM_CLASSES = ['__background__', 'golden circle', 'golden square', 'golden triangle', 'golden star', 'golden ring'];
const CUSTOM_NAME = 'golden-renamed.safetensors';
const CUSTOM_PATH = `/weights/${CUSTOM_NAME}`;
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
  /** Node on the second model and GOLDEN_IMAGE. */
  custom: { detections: Det[]; params: number; bytes: number; pixels: number };
  /** The page's pruned detections (the pruning test), for the downloaded file. */
  pagePruned: Det[];
  /** Temporary files: the second model, wrong weights files, downloads. */
  tmp: string;
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

  // The second model: the golden one, its class names changed in the metadata only (the values
  // stay F32, as in the fixture), so names shown in the page can only come from this file.
  c.tmp = mkdtempSync(join(tmpdir(), 'maskgpu-demo-'));
  const golden = parseSafetensors(new Uint8Array(readFileSync(GOLDEN_WEIGHTS)), maskrcnnParseOptions);
  const customBytes = serializeSafetensors(golden.tensors, { ...golden.metadata, classes: JSON.stringify(CUSTOM_CLASSES) });
  writeFileSync(join(c.tmp, CUSTOM_NAME), customBytes);
  const custom = await loadMaskRCNN(ctx, customBytes);
  assert.equal(custom.classes, CUSTOM_CLASSES);
  const goldenImage = await readImageFile(GOLDEN_IMAGE);
  const customResult = await custom.segment(goldenImage);
  custom.destroy();
  assert.ok(customResult.detections.length > 0, 'the second model finds something on its image');
  c.custom = { detections: customResult.detections, params: countParameters(golden), bytes: customBytes.length, pixels: rgbHash(goldenImage.data, 3) };
  // Wrong weights files, with the name the page sees.
  copyFileSync(`models/samples/${SAMPLE}.png`, join(c.tmp, 'not-weights.safetensors'));
  writeFileSync(join(c.tmp, 'not-maskrcnn.safetensors'), serializeSafetensors({ 'fc.weight': { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) } }));
  console.log(`    Node (${describeAdapter(ctx.report)}): ${denseResult.detections.length} dense, ${prunedResult.detections.length} pruned, ${customResult.detections.length} second-model detections in ${Date.now() - t0} ms`);

  c.server = await startDemoServer({ port: 0, files: { [CUSTOM_PATH]: join(c.tmp, CUSTOM_NAME) } });
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
  if (c.tmp) rmSync(c.tmp, { recursive: true, force: true });
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

/** FNV-1a of the page's current image (rgbHash, inlined: this runs in the page). */
const pagePixels = (tab: Page) =>
  tab.evaluate(() => {
    const d = window.maskgpuDemo.image!.data;
    let h = 0x811c9dc5;
    for (let i = 0; i < d.length; i++) if (i % 4 !== 3) h = Math.imul(h ^ d[i], 0x01000193) >>> 0;
    return h;
  });

/** The model panel: data attributes the page sets, the class names in the table and the panel's text. */
const shownModel = (tab: Page) =>
  tab.evaluate(() => {
    const dl = document.getElementById('weights-info')!;
    return {
      name: dl.dataset.name!,
      classes: JSON.parse(dl.dataset.classes!) as string[],
      params: Number(dl.dataset.params),
      bytes: Number(dl.dataset.bytes),
      text: dl.textContent!,
      labels: Array.from(document.querySelectorAll('#detections tbody td:nth-child(2)'), (td) => td.textContent!),
    };
  });

/** Starts a user action that must fail and returns the error the page then shows. */
async function failing(tab: Page, action: () => Promise<unknown>): Promise<string> {
  await tab.evaluate(() => (window.maskgpuDemo.error = undefined));
  await action();
  await tab.waitForFunction(() => !window.maskgpuDemo.busy && !!window.maskgpuDemo.error, { timeout: 60_000, polling: 50 });
  assert.is(await tab.evaluate(() => document.body.dataset.state), 'error');
  const shown = await tab.$eval('#error', (e) => ((e as HTMLElement).hidden ? '' : e.textContent!));
  assert.is(shown, await tab.evaluate(() => window.maskgpuDemo.error), 'the error is shown in the page');
  return shown;
}

/** maskgpu's cache folder for the CLI runs (kernel record, background compiles): the test's own. */
const CLI_CACHE = mkdtempSync(join(tmpdir(), 'maskgpu-demo-cache-'));

/** Runs `node bin/maskgpu.mjs args`; resolves with its output, rejects on a non-zero exit. */
function cli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/maskgpu.mjs', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MASKGPU_CACHE_DIR: CLI_CACHE } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`maskgpu ${args.join(' ')} exited with ${code}:\n${out}`))));
  });
}

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
  c.pagePruned = await pageDetections(c.tab);
  assertSameDetections(c.pagePruned, c.node.pruned, 'pruned');
  assert.ok(c.node.pruned.length > 0);
  await c.tab.screenshot({ path: `${ARTIFACTS}/demo-pruned.png` });
});

test('the pruned weights download, and the Node CLI runs them to the page\'s detections', async (c) => {
  const dir = join(c.tmp, 'downloads');
  mkdirSync(dir);
  const cdp = await c.browser.target().createCDPSession();
  try {
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: dir, eventsEnabled: true });
    let suggested = '';
    cdp.on('Browser.downloadWillBegin', (e) => (suggested = e.suggestedFilename));
    const done = new Promise<string>((resolve, reject) => {
      cdp.on('Browser.downloadProgress', (e) => e.state !== 'inProgress' && resolve(e.state));
      setTimeout(() => reject(new Error('no download finished within 60 s of clicking the button')), 60_000).unref();
    });
    await c.tab.click('#download');
    assert.is(await done, 'completed');
    assert.is(suggested, `maskgpu-shapes-pruned-${RATIO.toFixed(2)}.safetensors`);
    const path = join(dir, suggested);
    assert.ok(existsSync(path), `the download is saved as ${path}`);

    const file = parseSafetensors(new Uint8Array(readFileSync(path)), maskrcnnParseOptions);
    const dense = parseSafetensors(new Uint8Array(readFileSync(WEIGHTS)), maskrcnnParseOptions);
    assert.is(countParameters(file), c.node.prunedParams, 'the downloaded file is the pruned model');
    const narrower = [...file.tensors].filter(([k, t]) => t.shape[0] < dense.tensors.get(k)!.shape[0]).length;
    assert.ok(narrower > 50, `layers are narrower (${narrower} tensors)`);
    assert.is(file.metadata.classes, dense.metadata.classes, 'the class names travel with the file');
    assert.ok(JSON.parse(file.metadata.pruning).params.after === c.node.prunedParams, 'the pruning summary is in the metadata');

    const t0 = Date.now();
    const out = join(c.tmp, 'cli');
    await cli(['segment', `models/samples/${SAMPLE}.png`, '--weights', path, '--out', out]);
    const fromCli = JSON.parse(readFileSync(join(out, `${SAMPLE}.json`), 'utf8')).detections as Det[];
    console.log(`    downloaded ${suggested} (${(readFileSync(path).length / 2 ** 20).toFixed(2)} MiB); maskgpu segment ran it in ${Date.now() - t0} ms`);
    assertSameDetections(c.pagePruned, fromCli, 'the downloaded pruned file in the CLI');
  } finally {
    await cdp.detach();
  }
});

test(`pruning ${RATIO * 100} % with calibration in the page (BatchNorm statistics on the bundled samples) matches prune() with calibration in Node`, async (c) => {
  // Node: the same three samples, decoded as the CLI decodes them (the page's canvas gives the same bytes for opaque PNGs).
  const ctx = await sharedContext();
  const file = parseSafetensors(new Uint8Array(readFileSync(WEIGHTS)), maskrcnnParseOptions);
  const images = await Promise.all(['shapes_0', 'shapes_1', 'shapes_2'].map(async (s) => ({ ...(await readImageFile(`models/samples/${s}.png`)), name: `${s}.png` })));
  const { file: calibrated } = await prune(ctx, file, { ratio: RATIO, calibration: { images, mode: 'stats' } });
  const { file: plain } = await prune(ctx, file, { ratio: RATIO });
  const means = (f: typeof plain) => [...f.tensors].filter(([k]) => k.endsWith('.running_mean')).flatMap(([, t]) => Array.from(t.data));
  const changed = means(calibrated).filter((v, i) => v !== means(plain)[i]).length;
  assert.ok(changed > 100, `calibration changed ${changed} BatchNorm means`);
  const model = await loadMaskRCNN(ctx, calibrated);
  const node = (await model.segment(await readImageFile(`models/samples/${SAMPLE}.png`))).detections;
  model.destroy();

  await c.tab.click('#calibrate');
  assert.ok(await c.tab.$eval('#calibrate', (e) => (e as HTMLInputElement).checked), 'the calibration box is ticked');
  const runs = await c.tab.evaluate(() => window.maskgpuDemo.runs);
  const t0 = Date.now();
  await c.tab.click('#prune');
  await settled(c.tab, runs + 1);
  const text = await c.tab.$eval('#model-info', (e) => e.textContent ?? '');
  assert.match(text, /BatchNorm statistics on 3 images \(shapes_0\.png, shapes_1\.png, shapes_2\.png\)/);
  console.log(`    page: pruned and calibrated in ${Date.now() - t0} ms; ${node.length} detections in Node`);
  assertSameDetections(await pageDetections(c.tab), node, 'pruned and calibrated');
  await c.tab.click('#calibrate');
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

test('wrong weights files show an error and the bundled model keeps working', async (c) => {
  // The page the cache test left: the bundled model, SAMPLE (the first sample) not yet segmented.
  assert.is(await c.tab.evaluate(() => window.maskgpuDemo.runs), 0);
  assert.is(await c.tab.evaluate(() => window.maskgpuDemo.image!.name), `${SAMPLE}.png`);
  const input = (await c.tab.$('input#weights-file'))!;
  const still = /The previous model \(maskgpu-shapes\.safetensors\) is still loaded\./;

  let error = await failing(c.tab, () => input.uploadFile(join(c.tmp, 'not-weights.safetensors')));
  assert.match(error, /'not-weights\.safetensors' \(\d+ bytes\) is not a usable safetensors file: .*not a safetensors file/);
  assert.match(error, still);
  await c.tab.screenshot({ path: `${ARTIFACTS}/demo-wrong-weights.png` });

  error = await failing(c.tab, () => input.uploadFile(join(c.tmp, 'not-maskrcnn.safetensors')));
  assert.match(error, /'not-maskrcnn\.safetensors' is not a Mask R-CNN state dict maskgpu can run: .*unexpected tensor .*'fc\.weight'/);
  assert.match(error, still);

  // Dropped on the picture: a .safetensors file is taken as the model (here cut short).
  error = await failing(c.tab, () =>
    c.tab.evaluate(async (path) => {
      const bytes = await (await fetch(path)).arrayBuffer();
      const dt = new DataTransfer();
      dt.items.add(new File([bytes.slice(0, 100_000)], 'cut.safetensors'));
      document.getElementById('viewer')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, CUSTOM_PATH),
  );
  assert.match(error, /'cut\.safetensors' \(100000 bytes\) is not a usable safetensors file: .*truncated/);
  assert.match(error, still);

  const model = await shownModel(c.tab);
  assert.is(model.name, 'maskgpu-shapes.safetensors', 'the model panel still shows the bundled model');
  assert.is(await c.tab.evaluate(() => window.maskgpuDemo.session!.weights.name), 'maskgpu-shapes.safetensors');
  await c.tab.click('#run');
  await settled(c.tab, 1);
  assertSameDetections(await pageDetections(c.tab), c.node.dense, 'the bundled model after refused files');
});

test('another model loads through the file input and segments like the Node engine', async (c) => {
  // Same page: the bundled model on the second model's image first, then the file.
  await (await c.tab.$('input#file'))!.uploadFile(GOLDEN_IMAGE);
  await settled(c.tab, 2);
  assert.is(await pagePixels(c.tab), c.custom.pixels, 'the page decodes the image to the same pixels as Node');
  await (await c.tab.$('input#weights-file'))!.uploadFile(join(c.tmp, CUSTOM_NAME));
  await settled(c.tab, 3); // loading segments the current image with the new model
  const model = await shownModel(c.tab);
  assert.is(model.name, CUSTOM_NAME);
  assert.equal(model.classes, CUSTOM_CLASSES, 'class names from the file\'s metadata');
  assert.is(model.params, c.custom.params);
  assert.is(model.bytes, c.custom.bytes);
  assert.match(model.text, /5 \+ background: golden circle, golden square/);
  assert.match(model.text, /a local file \(not cached\)/);
  assert.match(model.text, /shorter side 256, longer at most 400/, 'the resize from the file\'s metadata');
  assert.ok(model.labels.length > 0 && model.labels.every((l) => l.startsWith('golden ')), `labels from the file's classes (${model.labels.join(', ')})`);
  assertSameDetections(await pageDetections(c.tab), c.custom.detections, 'second model, file input');
});

test('another model loads through ?weights=URL from another origin (CORS) and is cached', async (c) => {
  // The page is on localhost; 127.0.0.1 is another origin, so this fetch needs the server's CORS header.
  const url = new URL(CUSTOM_PATH, c.server.url.replace('localhost', '127.0.0.1')).href;
  await c.tab.goto(pageUrl(c, { weights: url, autorun: '0' }));
  await settled(c.tab, 0);
  let model = await shownModel(c.tab);
  assert.is(model.name, CUSTOM_NAME);
  assert.equal(model.classes, CUSTOM_CLASSES);
  assert.match(model.text, /downloaded \(now cached\)/);
  await (await c.tab.$('input#file'))!.uploadFile(GOLDEN_IMAGE);
  await settled(c.tab, 1);
  assertSameDetections(await pageDetections(c.tab), c.custom.detections, 'second model, ?weights=URL');
  model = await shownModel(c.tab);
  assert.ok(model.labels.length > 0 && model.labels.every((l) => l.startsWith('golden ')));
  await c.tab.screenshot({ path: `${ARTIFACTS}/demo-custom.png` });

  await c.tab.goto(pageUrl(c, { weights: url, autorun: '0' }));
  await settled(c.tab, 0);
  assert.ok(await c.tab.evaluate(() => window.maskgpuDemo.session!.weightsFromCache), 'URL weights come from the Cache API on reload');
  assert.match((await shownModel(c.tab)).text, /from the Cache API/);
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

    // ?weights= that fails: the error, and the bundled model instead.
    const badUrl = await fresh.newPage();
    await badUrl.goto(pageUrl(c, { weights: 'weights/missing.safetensors', autorun: '0' }));
    await badUrl.waitForFunction(() => !!window.maskgpuDemo.session && !window.maskgpuDemo.busy && !!window.maskgpuDemo.error, { timeout: 120_000 });
    const text = await errorText(badUrl);
    assert.match(text, /weights=weights\/missing\.safetensors: could not download weights from .*missing\.safetensors: HTTP 404/);
    assert.match(text, /The bundled model is loaded instead\./);
    assert.is((await shownModel(badUrl)).name, 'maskgpu-shapes.safetensors');
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
