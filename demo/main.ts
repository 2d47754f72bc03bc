// The demo page: loads the bundled model (weights cached in the Cache API) or the user's own
// weights (a local file picked or dropped, or ?weights=URL), segments a bundled sample or the
// user's image, draws the result, re-filters by score without re-running, prunes the model on the
// GPU at a chosen ratio and offers the pruned weights as a download. Every failure is shown in the
// page; weights that fail to load leave the previous model in use.
//
// Address parameters: weights=URL (a safetensors file on this server, or on one that allows CORS;
// the bundled model if it fails), sample=shapes_0|shapes_1|shapes_2, autorun=0 (do not segment on load),
// featureLevel=compatibility (a compatibility-mode adapter, e.g. OpenGL ES: see bench/README.md),
// minSize=N and maxSize=N (the resize; default from the weights' metadata), boxScoreThresh=S
// (the model's own threshold, default torchvision's 0.05; the slider only filters above it),
// kernels=tiered|tuned|quick (engine/kernelTiers.ts). window.maskgpuDemo exposes the state to automation (tests/demo.test.ts, bench/browser.ts).

import { describeAdapter, rleArea, type SegmentResult } from '../index.ts';
import { drawDetections } from './draw.ts';
import { decodeImage, fetchImage, type Pixels } from './image.ts';
import { readAddressParams } from './params.ts';
import { DemoSession, fileNameOf, prunedFileName, type ModelInfo, type Progress, type WeightsInfo } from './session.ts';
import { CalibrationSet } from './calibration.ts';
import { saveBytes } from './download.ts';

export interface DemoState {
  session?: DemoSession;
  image?: Pixels;
  result?: SegmentResult;
  /** Segment calls finished since the page loaded. */
  runs: number;
  /** Detections drawn at the current threshold. */
  shown: number;
  /** Pruned weights files offered for download. */
  downloads: number;
  busy: boolean;
  error?: string;
}

declare global {
  interface Window {
    maskgpuDemo: DemoState;
  }
}

const BUNDLED_WEIGHTS = 'models/maskgpu-shapes.safetensors';
const state: DemoState = { runs: 0, shown: 0, downloads: 0, busy: false };
window.maskgpuDemo = state;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  error: $<HTMLDivElement>('error'),
  weightsInfo: $<HTMLDListElement>('weights-info'),
  weightsFile: $<HTMLInputElement>('weights-file'),
  bundled: $<HTMLButtonElement>('bundled'),
  download: $<HTMLButtonElement>('download'),
  downloadNote: $<HTMLParagraphElement>('download-note'),
  status: $<HTMLSpanElement>('status-text'),
  progress: $<HTMLProgressElement>('progress'),
  sample: $<HTMLSelectElement>('sample'),
  file: $<HTMLInputElement>('file'),
  profile: $<HTMLInputElement>('profile'),
  run: $<HTMLButtonElement>('run'),
  score: $<HTMLInputElement>('score'),
  scoreValue: $<HTMLOutputElement>('score-value'),
  shown: $<HTMLParagraphElement>('shown'),
  ratio: $<HTMLInputElement>('ratio'),
  ratioValue: $<HTMLOutputElement>('ratio-value'),
  calibrate: $<HTMLInputElement>('calibrate'),
  prune: $<HTMLButtonElement>('prune'),
  modelInfo: $<HTMLDListElement>('model-info'),
  viewer: $<HTMLElement>('viewer'),
  canvas: $<HTMLCanvasElement>('canvas'),
  caption: $<HTMLElement>('caption'),
  timings: $<HTMLTableElement>('timings'),
  stagesNote: $<HTMLParagraphElement>('stages-note'),
  detections: $<HTMLTableElement>('detections'),
  adapter: $<HTMLDListElement>('adapter'),
};

const fmtMs = (ms: number) => (ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`);
const fmtInt = (n: number) => n.toLocaleString('en-US');
const fmtBytes = (n: number) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`);

function setStatus(text: string): void {
  ui.status.textContent = text;
}

function showError(e: unknown): void {
  const message = e instanceof Error ? e.message : String(e);
  state.error = message;
  ui.error.textContent = message;
  ui.error.hidden = false;
  document.body.dataset.state = 'error';
  setStatus('Failed: see the message above.');
}

function setBusy(busy: boolean): void {
  state.busy = busy;
  const ready = !!state.session && !busy;
  for (const el of [ui.run, ui.prune, ui.sample, ui.file, ui.weightsFile, ui.bundled]) el.disabled = !ready;
  ui.download.disabled = !ready || !state.session!.info.ratio;
  document.body.dataset.state = busy ? 'busy' : state.error ? 'error' : state.session ? 'ready' : 'loading';
}

/** Runs one user action: one at a time, errors into the page. */
async function guard(action: () => Promise<void>): Promise<void> {
  if (state.busy) {
    setStatus('Busy: wait for the current step to finish.');
    return;
  }
  ui.error.hidden = true;
  state.error = undefined;
  setBusy(true);
  try {
    await action();
  } catch (e) {
    showError(e);
  } finally {
    setBusy(false);
  }
}

/** A table row whose first cell heads the row. */
function row(cells: Array<string | number>): HTMLTableRowElement {
  const tr = document.createElement('tr');
  cells.forEach((c, i) => {
    const cell = document.createElement(i > 0 ? 'td' : 'th');
    if (i === 0) cell.setAttribute('scope', 'row');
    cell.textContent = String(c);
    tr.append(cell);
  });
  return tr;
}

function fillList(dl: HTMLDListElement, items: Array<[string, string]>): void {
  dl.replaceChildren(...items.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    return [dt, dd];
  }));
}

/** At most this many class names are listed; the rest are counted. */
const CLASSES_LISTED = 12;

function renderWeights(w: WeightsInfo): void {
  const names = w.classes.slice(1);
  const listed = names.length > CLASSES_LISTED ? `${names.slice(0, CLASSES_LISTED).join(', ')}, … (${names.length - CLASSES_LISTED} more)` : names.join(', ');
  const source =
    w.source === 'file'
      ? 'a local file (not cached)'
      : `${w.source === 'bundled' ? 'bundled, ' : ''}${w.fromCache ? 'from the Cache API (no download)' : 'downloaded (now cached)'}`;
  const pruned = w.metadata.pruning ? ' (a pruned file)' : '';
  fillList(ui.weightsInfo, [
    ['Name', `${w.name}${pruned}`],
    ['Source', source],
    ['Classes', `${names.length} + background: ${listed}`],
    ['Parameters', fmtInt(w.params)],
    ['Size', `${fmtBytes(w.bytes)}, ${w.dtypes}`],
    ['Resize', `shorter side ${w.minSize}, longer at most ${w.maxSize}`],
  ]);
  ui.weightsInfo.dataset.name = w.name;
  ui.weightsInfo.dataset.classes = JSON.stringify(w.classes);
  ui.weightsInfo.dataset.params = String(w.params);
  ui.weightsInfo.dataset.bytes = String(w.bytes);
  const classesDd = ui.weightsInfo.querySelectorAll('dd')[2];
  classesDd.title = names.join(', ');
  ui.bundled.hidden = w.source === 'bundled';
  if (w.url && w.source === 'url') ui.weightsInfo.querySelector('dd')!.title = w.url;
}

function renderModelInfo(info: ModelInfo): void {
  const dense = state.session!.denseInfo;
  const items: Array<[string, string]> = [['Model', info.ratio ? `pruned, ${(info.ratio * 100).toFixed(0)} % of channels removed` : 'dense']];
  items.push(['Parameters', info.ratio ? `${fmtInt(info.params)} (dense ${fmtInt(dense.params)})` : fmtInt(info.params)]);
  if (info.report) {
    const s = info.report.summary;
    items.push(['Compression rate', `${s.params.compressionRate.toFixed(2)}×`]);
    items.push([`GMACs at ${s.gmacs.inputSize.join('×')}`, `${s.gmacs.after.total} (dense ${s.gmacs.before.total})`]);
    items.push(['Prune time', `${fmtMs(info.pruneMs!)} (L1 norms on the GPU, compaction${info.calibration ? ', calibration' : ''}, upload)`]);
    items.push(['Calibration', info.calibration ? `BatchNorm statistics on ${info.calibration.images.length} images (${info.calibration.images.join(', ')})` : 'none']);
  }
  fillList(ui.modelInfo, items);
  ui.modelInfo.dataset.params = String(info.params);
  ui.downloadNote.textContent = info.ratio
    ? `The pruned model as a safetensors file (${prunedFileName(state.session!.weights.name, info.ratio)}), for maskgpu segment --weights or another page.`
    : 'Prune first: the file is the narrower model this page runs, for maskgpu segment --weights.';
}

function renderAdapter(session: DemoSession): void {
  const r = session.ctx.report;
  fillList(ui.adapter, [
    ['Adapter', describeAdapter(r)],
    ['Feature level', session.featureLevel === 'compatibility' ? 'compatibility (asked for in the address)' : 'core'],
    ['Optional features', r.features.join(', ') || 'none'],
    ['Largest storage binding', `${(r.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`],
  ]);
}

function renderTimings(result: SegmentResult): void {
  const t = result.timingsMs;
  const rows = [row(['total', fmtMs(t.total)]), row(['plan (first image of a size)', fmtMs(t.plan)]), row(['GPU (upload to results)', fmtMs(t.gpu)]), row(['masks to RLE', fmtMs(t.masks)])];
  // stagesMs is absent in engines older than per-stage timing, null when not measured.
  const stages = result.stagesMs ?? null;
  if (stages) for (const [name, ms] of Object.entries(stages)) rows.push(row([`· ${name}`, fmtMs(ms)]));
  ui.timings.tBodies[0].replaceChildren(...rows);
  ui.stagesNote.textContent = !stages
    ? 'Per-stage times: tick "Time each stage" (this device has no GPU timestamps, so stages are then submitted one by one).'
    : result.stagesSource === 'gpu-timestamps'
      ? 'Stages from GPU timestamps, in the same single submit.'
      : 'Stages timed on the CPU, submitting one stage at a time (slower than a normal run).';
}

/** Redraws from the last result at the current threshold: no GPU work. */
function render(): void {
  const threshold = Number(ui.score.value);
  ui.scoreValue.textContent = threshold.toFixed(2);
  if (!state.image) return;
  const detections = state.result?.detections ?? [];
  state.shown = drawDetections(ui.canvas, state.image, detections, threshold);
  ui.canvas.dataset.shown = String(state.shown);
  ui.shown.textContent = state.result ? `${state.shown} of ${detections.length} detections with score ≥ ${threshold.toFixed(2)}.` : 'No result yet.';
  const rows = detections
    .map((d, i) => ({ d, i }))
    .filter(({ d }) => d.score >= threshold)
    .map(({ d, i }) => row([i, d.labelName, d.score.toFixed(3), d.box.map((v) => v.toFixed(1)).join(', '), rleArea(d.mask)]));
  ui.detections.tBodies[0].replaceChildren(...rows);
  ui.canvas.setAttribute('aria-label', `${state.image.name}: ${state.shown} detections drawn (${[...new Set(detections.filter((d) => d.score >= threshold).map((d) => d.labelName))].join(', ') || 'none'})`);
}

function setImage(image: Pixels): void {
  state.image = image;
  state.result = undefined;
  ui.caption.textContent = `${image.name}, ${image.width}×${image.height}. Drop another image here to segment it, or a .safetensors file to use it as the model.`;
  render();
}

async function segment(): Promise<void> {
  const { session, image } = state;
  if (!session || !image) return;
  setStatus(`Segmenting ${image.name}…`);
  state.result = await session.segment(image, { profile: ui.profile.checked });
  state.runs += 1;
  render();
  renderTimings(state.result);
  setStatus(`${image.name}: ${state.result.detections.length} detections in ${fmtMs(state.result.timingsMs.total)}.`);
}

/** Progress bar and status while weights download (or come from the cache). */
function weightsProgress(name: string): Progress {
  ui.progress.hidden = false;
  ui.progress.removeAttribute('value');
  return (loaded, total, source) => {
    if (total) ui.progress.max = total;
    ui.progress.value = loaded;
    setStatus(`${source === 'cache' ? 'Reading cached' : 'Downloading'} ${name}: ${(loaded / 2 ** 20).toFixed(1)}${total ? ` of ${(total / 2 ** 20).toFixed(1)}` : ''} MiB…`);
  };
}

/** Shows a newly loaded model: its weights, the dense model's info, the pruning slider back at 0. */
function modelLoaded(weights: WeightsInfo): void {
  ui.progress.hidden = true;
  state.result = undefined;
  render();
  renderWeights(weights);
  renderModelInfo(state.session!.info);
  ui.ratio.value = '0';
  ui.ratioValue.textContent = '0 %';
  setStatus(`Loaded ${weights.name}: ${weights.classes.length - 1} classes, ${fmtInt(weights.params)} parameters.`);
}

/** Loads other weights; the current model stays if they fail. Segments the current image with them. */
async function loadWeights(load: (session: DemoSession) => Promise<WeightsInfo>): Promise<void> {
  const session = state.session!;
  const previous = session.weights.name;
  let weights: WeightsInfo;
  try {
    weights = await load(session);
  } catch (e) {
    ui.progress.hidden = true;
    const message = e instanceof Error ? e.message : String(e);
    throw new Error(`${message}\nThe previous model (${previous}) is still loaded.`);
  }
  modelLoaded(weights);
  if (state.image) await segment();
}

async function start(): Promise<void> {
  const p = readAddressParams(location.search, Array.from(ui.sample.options, (o) => o.value));
  if (p.sample !== undefined) ui.sample.value = p.sample;
  const weightsUrl = p.weightsUrl ?? null;

  setStatus('Requesting a WebGPU device…');
  const session = await DemoSession.create({ featureLevel: p.featureLevel, modelOptions: p.modelOptions, onDeviceError: showError, kernels: p.kernels });
  // The address's weights, else (or when they fail) the bundled model.
  let failed: string | undefined;
  if (weightsUrl !== null) {
    try {
      await session.loadUrl(weightsUrl, { onProgress: weightsProgress(fileNameOf(weightsUrl)) });
    } catch (e) {
      failed = `address parameter weights=${weightsUrl}: ${e instanceof Error ? e.message : String(e)}\nThe bundled model is loaded instead.`;
    }
  }
  if (weightsUrl === null || failed) await session.loadUrl(BUNDLED_WEIGHTS, { bundled: true, onProgress: weightsProgress('the bundled model') });
  state.session = session;
  renderAdapter(session);
  modelLoaded(session.weights);
  setImage(await fetchImage(`models/samples/${ui.sample.value}.png`));
  if (p.autorun) await segment();
  else setStatus('Ready: press Segment.');
  if (failed) showError(new Error(failed));
}

const calibrationSet = new CalibrationSet(Array.from(ui.sample.options, (o) => o.value));

async function openFile(file: File): Promise<void> {
  const image = await decodeImage(file, file.name);
  calibrationSet.add(image);
  setImage(image);
  await segment();
}

const isWeightsFile = (file: File) => /\.safetensors$/i.test(file.name);

/** Offers the pruned weights the page made as a file download (a Blob URL). */
function downloadPruned(): void {
  const made = state.session!.prunedFile();
  if (!made) throw new Error('nothing to download: prune the model first');
  saveBytes(made.bytes, made.name);
  state.downloads += 1;
  setStatus(`Saved ${made.name} (${fmtBytes(made.bytes.length)}, ${made.dtype}).`);
}

ui.score.addEventListener('input', render);
ui.ratio.addEventListener('input', () => {
  ui.ratioValue.textContent = `${(Number(ui.ratio.value) * 100).toFixed(0)} %`;
});
ui.run.addEventListener('click', () => guard(segment));
ui.sample.addEventListener('change', () => guard(async () => {
  setImage(await fetchImage(`models/samples/${ui.sample.value}.png`));
  await segment();
}));
ui.file.addEventListener('change', () => {
  const file = ui.file.files?.[0];
  ui.file.value = ''; // the same file can be chosen again
  if (file) guard(() => (isWeightsFile(file) ? loadWeights((s) => s.loadFile(file, file.name)) : openFile(file)));
});
ui.weightsFile.addEventListener('change', () => {
  const file = ui.weightsFile.files?.[0];
  ui.weightsFile.value = '';
  if (file) guard(() => loadWeights((s) => s.loadFile(file, file.name)));
});
ui.bundled.addEventListener('click', () => guard(() => loadWeights((s) => s.loadUrl(BUNDLED_WEIGHTS, { bundled: true, onProgress: weightsProgress('the bundled model') }))));
ui.download.addEventListener('click', () => guard(async () => downloadPruned()));
ui.prune.addEventListener('click', () => guard(async () => {
  const ratio = Number(ui.ratio.value);
  const calibration = ratio && ui.calibrate.checked ? await calibrationSet.images() : undefined;
  setStatus(
    ratio
      ? `Pruning ${(ratio * 100).toFixed(0)} % of the channels on the GPU${calibration ? `, then calibrating on ${calibration.length} images` : ''}…`
      : 'Back to the dense model…',
  );
  renderModelInfo(await state.session!.setRatio(ratio, calibration));
  await segment();
}));
ui.viewer.addEventListener('dragover', (e) => {
  e.preventDefault();
  ui.viewer.classList.add('dropping');
});
ui.viewer.addEventListener('dragleave', () => ui.viewer.classList.remove('dropping'));
ui.viewer.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.viewer.classList.remove('dropping');
  const file = e.dataTransfer?.files[0];
  if (file) guard(() => (isWeightsFile(file) ? loadWeights((s) => s.loadFile(file, file.name)) : openFile(file)));
  else showError(new Error('nothing to open: drop an image file (PNG or JPEG) or a .safetensors weights file'));
});
window.addEventListener('unhandledrejection', (e) => showError(e.reason));
window.addEventListener('error', (e) => showError(e.error ?? e.message));

guard(start);
