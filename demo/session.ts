// The demo's model state, free of DOM code: the WebGPU device, the loaded weights (the bundled
// model by default, or a URL, or a local file), the dense model made from them, and at most one
// pruned model made in the page by prune() on the same device. Loading other weights replaces the
// model only once the new one is on the device: a file that fails leaves the previous model in
// use. Weights from a URL (the bundled model too) are kept in the Cache API; a local file is not.
// The page (main.ts) drives it; tests and the browser benchmark drive it too, through
// window.maskgpuDemo.
//
// Imports name the engine sources so that TypeScript checks them; the demo build maps
// '../index.ts' to the library bundle (/maskgpu.js), so the page runs the real bundle.

import {
  GpuContext,
  OPTIONAL_FEATURES,
  SafetensorsError,
  WeightsError,
  fetchSafetensors,
  floatToHalf,
  halfToFloat,
  loadMaskRCNN,
  loadMaskRCNNWeights,
  maskrcnnParseOptions,
  parseSafetensors,
  prune,
  serializeSafetensors,
  type CompileReport,
  type MaskRCNN,
  type MaskRCNNOptions,
  type PruneReport,
  type RgbImage,
  type SafetensorsFile,
  type SegmentResult,
} from '../index.ts';

export interface SessionOptions {
  /** 'compatibility' asks for a WebGPU compatibility-mode adapter (e.g. OpenGL ES), which the page then owns. */
  featureLevel?: 'core' | 'compatibility';
  /** Engine options for every model (e.g. a smaller maxSize); the weights' metadata, then torchvision's defaults otherwise. */
  modelOptions?: MaskRCNNOptions;
  /** Uncaptured WebGPU errors and device loss: the page shows them. */
  onDeviceError?: (message: string) => void;
  /** Kernel tiers (engine/kernelTiers.ts); the library's default 'tiered' otherwise. The page's ?kernels=. */
  kernels?: string;
}

export type Progress = (loaded: number, total: number | undefined, source: 'network' | 'cache') => void;

/** Where the loaded weights came from and what they hold. */
export interface WeightsInfo {
  /** The file's name: the URL's last path segment, or the local file's name. */
  name: string;
  source: 'bundled' | 'url' | 'file';
  /** The URL as given (bundled and url). */
  url?: string;
  /** Size of the file in bytes. */
  bytes: number;
  /** The tensors' dtypes in the file, e.g. 'F16' or 'F32, F16'. */
  dtypes: string;
  /** Whether the bytes came from the Cache API rather than the network. */
  fromCache: boolean;
  /** From the file's metadata (`__metadata__.classes`), index 0 the background. */
  classes: string[];
  /** Conv and linear weights and biases. */
  params: number;
  /** The resize the model runs at (metadata, unless the address overrides it). */
  minSize: number;
  maxSize: number;
  /** The file's own `__metadata__` (format, source, pruning...). */
  metadata: Record<string, string>;
}

export interface ModelInfo {
  ratio: number;
  /** Conv and linear weights and biases (the pruning report's count). */
  params: number;
  /** Present for pruned models. */
  report?: PruneReport;
  /** Wall time of prune() plus loading the pruned model onto the device. */
  pruneMs?: number;
  /** Present when the pruned model was calibrated (BatchNorm statistics re-estimated on these images). */
  calibration?: { images: string[]; mode: 'stats' };
}

/** An unlabeled image for calibration: RGB or RGBA pixels (canvas ImageData works) and a name. */
export interface CalibrationPixels {
  width: number;
  height: number;
  data: Uint8Array | Uint8ClampedArray;
  name: string;
}

/** Weights and biases of conv and linear layers: what the pruning report calls parameters. */
export function countParameters(file: SafetensorsFile): number {
  let n = 0;
  for (const [name, t] of file.tensors) {
    const isLayerWeight = t.shape.length >= 2;
    const isLayerBias = name.endsWith('.bias') && (file.tensors.get(`${name.slice(0, -5)}.weight`)?.shape.length ?? 0) >= 2;
    if (isLayerWeight || isLayerBias) n += t.data.length;
  }
  return n;
}

/** The name a URL's file goes by: its last path segment, else its host. */
export function fileNameOf(url: string): string {
  try {
    const u = new URL(url, 'http://localhost/');
    const last = decodeURIComponent(u.pathname.split('/').pop() ?? '');
    return last || u.host || url;
  } catch {
    return url;
  }
}

/** `<name without .safetensors>-pruned-<ratio>.safetensors`. */
export function prunedFileName(name: string, ratio: number): string {
  return `${name.replace(/\.safetensors$/i, '') || 'model'}-pruned-${ratio.toFixed(2)}.safetensors`;
}

/** Whether every value survives F16 exactly (then the smaller file is the same model). */
function exactInHalf(file: SafetensorsFile): boolean {
  for (const t of file.tensors.values()) {
    for (let i = 0; i < t.data.length; i++) if (halfToFloat(floatToHalf(t.data[i])) !== t.data[i]) return false;
  }
  return true;
}

/** The page's own device on a compatibility-mode adapter, with the adapter's full limits. */
async function compatibilityContext(onDeviceError: (message: string) => void): Promise<GpuContext> {
  if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing); use Chrome or Edge 113+, Safari 26+ or Firefox 141+ on https or http://localhost');
  const adapter = await navigator.gpu.requestAdapter({ featureLevel: 'compatibility' } as GPURequestAdapterOptions);
  if (!adapter) throw new Error('no WebGPU compatibility-mode adapter; remove ?featureLevel=compatibility from the address to use the default one');
  const requiredLimits: Record<string, number> = {};
  // WebIDL attributes are enumerable getters: this walks every limit the adapter reports.
  for (const name in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  device.addEventListener('uncapturederror', (e) => onDeviceError(`WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`));
  device.lost.then((info) => info.reason !== 'destroyed' && onDeviceError(`the WebGPU device was lost (${info.message}); reload the page`));
  const ctx = GpuContext.fromDevice(device);
  // Background compiles of the tuned kernels (engine/tiers.ts) run on a device of their own.
  ctx.acquireAnother = () => compatibilityContext(() => undefined);
  return ctx;
}

interface Loaded {
  weights: WeightsInfo;
  file: SafetensorsFile;
  dense: MaskRCNN;
  denseInfo: ModelInfo;
}

export class DemoSession {
  private loaded?: Loaded;
  private pruned?: { model: MaskRCNN; info: ModelInfo; file: SafetensorsFile };

  private constructor(
    readonly ctx: GpuContext,
    readonly featureLevel: 'core' | 'compatibility',
    private readonly modelOptions: MaskRCNNOptions,
  ) {}

  /** The WebGPU device; no model yet (loadUrl or loadFile). */
  static async create(o: SessionOptions = {}): Promise<DemoSession> {
    const onDeviceError = o.onDeviceError ?? ((m: string) => console.error(m));
    const ctx =
      o.featureLevel === 'compatibility'
        ? await compatibilityContext(onDeviceError)
        : await GpuContext.create({ onUncapturedError: (e) => onDeviceError(`WebGPU error: ${e.message}`), onLost: (info) => onDeviceError(`the WebGPU device was lost (${info.message}); reload the page`) });
    if (o.kernels !== undefined) {
      if (o.kernels !== 'tiered' && o.kernels !== 'tuned' && o.kernels !== 'quick') throw new Error(`address parameter kernels=${o.kernels}: use tiered, tuned or quick`);
      ctx.setKernelTiers(o.kernels);
    }
    return new DemoSession(ctx, o.featureLevel ?? 'core', o.modelOptions ?? {});
  }

  /**
   * Compiles the tuned kernels the model's quick stand-ins replace (engine/tiers.ts); the model
   * starts this by itself after its first run, so this only waits for it (the benchmarks do).
   */
  compileTunedKernels(): Promise<CompileReport> {
    if (!this.loaded) throw new Error('no model loaded yet');
    return this.loaded.dense.compileTunedKernels();
  }

  /**
   * Downloads weights (same origin, or another one that allows it through CORS), keeping them in
   * the Cache API, and makes them the model. On failure the previous model stays.
   */
  async loadUrl(url: string, o: { bundled?: boolean; onProgress?: Progress } = {}): Promise<WeightsInfo> {
    let fromCache = false;
    let bytes = 0;
    let file: SafetensorsFile;
    try {
      file = await fetchSafetensors(url, {
        ...maskrcnnParseOptions,
        cache: true,
        onProgress: (loaded, total, source) => {
          fromCache = source === 'cache';
          bytes = loaded;
          o.onProgress?.(loaded, total, source);
        },
      });
    } catch (e) {
      // fetch() rejects with a bare TypeError ("Failed to fetch") for network and CORS failures.
      if (e instanceof TypeError) {
        throw new Error(`could not download weights from ${url}: ${e.message} (the server is unreachable, or it is on another origin and does not allow this page: it must send Access-Control-Allow-Origin)`);
      }
      throw e;
    }
    return this.install(file, { name: fileNameOf(url), source: o.bundled ? 'bundled' : 'url', url, bytes, fromCache }, url);
  }

  /** Reads a local safetensors file (not cached) and makes it the model. On failure the previous model stays. */
  async loadFile(blob: Blob, name: string): Promise<WeightsInfo> {
    let file: SafetensorsFile;
    try {
      file = parseSafetensors(new Uint8Array(await blob.arrayBuffer()), maskrcnnParseOptions);
    } catch (e) {
      if (e instanceof SafetensorsError) throw new SafetensorsError(`'${name}' (${blob.size} bytes) is not a usable safetensors file: ${e.message}`, e.key, e.offset);
      throw e;
    }
    return this.install(file, { name, source: 'file', bytes: blob.size, fromCache: false }, `'${name}'`);
  }

  private async install(file: SafetensorsFile, from: Pick<WeightsInfo, 'name' | 'source' | 'url' | 'bytes' | 'fromCache'>, what: string): Promise<WeightsInfo> {
    let dense: MaskRCNN;
    try {
      // Validates the state dict on the CPU (WeightsError) before anything goes to the device.
      dense = await loadMaskRCNN(this.ctx, loadMaskRCNNWeights(file), this.modelOptions);
    } catch (e) {
      if (e instanceof WeightsError) throw new WeightsError(`${what} is not a Mask R-CNN state dict maskgpu can run: ${e.message}`, e.key);
      throw e;
    }
    const params = countParameters(file);
    const weights: WeightsInfo = {
      ...from,
      dtypes: [...new Set([...file.tensors.values()].map((t) => t.dtype))].join(', '),
      classes: dense.classes,
      params,
      minSize: dense.options.minSize,
      maxSize: dense.options.maxSize,
      metadata: file.metadata,
    };
    this.pruned?.model.destroy();
    this.pruned = undefined;
    this.loaded?.dense.destroy();
    this.loaded = { weights, file, dense, denseInfo: { ratio: 0, params } };
    return weights;
  }

  private get current(): Loaded {
    if (!this.loaded) throw new Error('no model is loaded yet');
    return this.loaded;
  }

  /** The loaded weights: name, source, classes, parameters, size. */
  get weights(): WeightsInfo {
    return this.current.weights;
  }

  /** The loaded safetensors file (dense). */
  get file(): SafetensorsFile {
    return this.current.file;
  }

  get dense(): MaskRCNN {
    return this.current.dense;
  }

  get denseInfo(): ModelInfo {
    return this.current.denseInfo;
  }

  /** Whether the weights came from the Cache API rather than the network. */
  get weightsFromCache(): boolean {
    return this.current.weights.fromCache;
  }

  /** The model segment() runs: the pruned one if a ratio > 0 was applied, else the dense one. */
  get model(): MaskRCNN {
    return this.pruned?.model ?? this.dense;
  }

  get info(): ModelInfo {
    return this.pruned?.info ?? this.denseInfo;
  }

  /**
   * Prunes the dense weights at `ratio` on the GPU (0: back to the dense model) and loads the
   * result. With `calibration` images the pruned network's BatchNorm statistics are re-estimated
   * on them first (prune()'s calibration, mode 'stats': no labels, no training).
   */
  async setRatio(ratio: number, calibration?: CalibrationPixels[]): Promise<ModelInfo> {
    const names = calibration?.length ? calibration.map((c) => c.name) : undefined;
    if (ratio === this.info.ratio && (ratio === 0 || JSON.stringify(names) === JSON.stringify(this.info.calibration?.images))) return this.info;
    const { file: source, denseInfo } = this.current;
    this.pruned?.model.destroy();
    this.pruned = undefined;
    if (ratio === 0) return denseInfo;
    const t0 = performance.now();
    const { file, report } = await prune(this.ctx, source, {
      ratio,
      calibration: names ? { images: calibration!.map(({ width, height, data, name }) => ({ width, height, data, name })), mode: 'stats' } : undefined,
    });
    const model = await loadMaskRCNN(this.ctx, file, this.modelOptions);
    const info: ModelInfo = { ratio, params: countParameters(file), report, pruneMs: performance.now() - t0, calibration: names ? { images: names, mode: 'stats' } : undefined };
    this.pruned = { model, info, file };
    return info;
  }

  /**
   * The pruned model as a safetensors file (undefined when the dense model is in use): the very
   * values the page runs, in F16 when the loaded file was all F16 and every value is exact in F16,
   * else F32; metadata kept, plus `pruning`. It loads anywhere the original does (`maskgpu segment
   * --weights`).
   */
  prunedFile(): { name: string; bytes: Uint8Array<ArrayBuffer>; dtype: 'F16' | 'F32' } | undefined {
    if (!this.pruned) return undefined;
    const { file, info } = this.pruned;
    const allHalf = [...this.current.file.tensors.values()].every((t) => t.dtype === 'F16');
    const dtype = allHalf && exactInHalf(file) ? 'F16' : 'F32';
    const bytes = serializeSafetensors(file.tensors, file.metadata, { dtype }) as Uint8Array<ArrayBuffer>;
    return { name: prunedFileName(this.current.weights.name, info.ratio), bytes, dtype };
  }

  segment(image: RgbImage, options: { profile?: boolean } = {}): Promise<SegmentResult> {
    return this.model.segment(image, options);
  }
}
