// The demo's model state, free of DOM code: the WebGPU device, the bundled weights (downloaded
// once with progress, kept in the Cache API), the dense model and at most one pruned model made
// in the page by prune() on the same device. The page (main.ts) drives it; tests and the browser
// benchmark drive it too, through window.maskgpuDemo.
//
// Imports name the engine sources so that TypeScript checks them; the demo build maps
// '../index.ts' to the library bundle (/maskgpu.js), so the page runs the real bundle.

import {
  GpuContext,
  OPTIONAL_FEATURES,
  fetchSafetensors,
  loadMaskRCNN,
  maskrcnnParseOptions,
  prune,
  type MaskRCNN,
  type MaskRCNNOptions,
  type PruneReport,
  type RgbImage,
  type SafetensorsFile,
  type SegmentResult,
} from '../index.ts';

export interface SessionOptions {
  weightsUrl: string;
  /** 'compatibility' asks for a WebGPU compatibility-mode adapter (e.g. OpenGL ES), which the page then owns. */
  featureLevel?: 'core' | 'compatibility';
  /** Engine options for every model (e.g. a smaller maxSize); torchvision's defaults otherwise. */
  modelOptions?: MaskRCNNOptions;
  onProgress?: (loaded: number, total: number | undefined, source: 'network' | 'cache') => void;
  /** Uncaptured WebGPU errors and device loss: the page shows them. */
  onDeviceError?: (message: string) => void;
}

export interface ModelInfo {
  ratio: number;
  /** Conv and linear weights and biases (the pruning report's count). */
  params: number;
  /** Present for pruned models. */
  report?: PruneReport;
  /** Wall time of prune() plus loading the pruned model onto the device. */
  pruneMs?: number;
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
  return GpuContext.fromDevice(device);
}

export class DemoSession {
  private pruned?: { model: MaskRCNN; info: ModelInfo };

  private constructor(
    readonly ctx: GpuContext,
    readonly file: SafetensorsFile,
    readonly dense: MaskRCNN,
    readonly denseInfo: ModelInfo,
    /** Whether the weights came from the Cache API rather than the network. */
    readonly weightsFromCache: boolean,
    readonly featureLevel: 'core' | 'compatibility',
    private readonly modelOptions: MaskRCNNOptions,
  ) {}

  static async start(o: SessionOptions): Promise<DemoSession> {
    const onDeviceError = o.onDeviceError ?? ((m: string) => console.error(m));
    const ctx =
      o.featureLevel === 'compatibility'
        ? await compatibilityContext(onDeviceError)
        : await GpuContext.create({ onUncapturedError: (e) => onDeviceError(`WebGPU error: ${e.message}`), onLost: (info) => onDeviceError(`the WebGPU device was lost (${info.message}); reload the page`) });
    let fromCache = false;
    const file = await fetchSafetensors(o.weightsUrl, {
      ...maskrcnnParseOptions,
      cache: true,
      onProgress: (loaded, total, source) => {
        fromCache = source === 'cache';
        o.onProgress?.(loaded, total, source);
      },
    });
    const modelOptions = o.modelOptions ?? {};
    const dense = await loadMaskRCNN(ctx, file, modelOptions);
    return new DemoSession(ctx, file, dense, { ratio: 0, params: countParameters(file) }, fromCache, o.featureLevel ?? 'core', modelOptions);
  }

  /** The model segment() runs: the pruned one if a ratio > 0 was applied, else the dense one. */
  get model(): MaskRCNN {
    return this.pruned?.model ?? this.dense;
  }

  get info(): ModelInfo {
    return this.pruned?.info ?? this.denseInfo;
  }

  /** Prunes the dense weights at `ratio` on the GPU (0: back to the dense model) and loads the result. */
  async setRatio(ratio: number): Promise<ModelInfo> {
    if (ratio === this.info.ratio) return this.info;
    this.pruned?.model.destroy();
    this.pruned = undefined;
    if (ratio === 0) return this.denseInfo;
    const t0 = performance.now();
    const { file, report } = await prune(this.ctx, this.file, { ratio });
    const model = await loadMaskRCNN(this.ctx, file, this.modelOptions);
    const info: ModelInfo = { ratio, params: countParameters(file), report, pruneMs: performance.now() - t0 };
    this.pruned = { model, info };
    return info;
  }

  segment(image: RgbImage, options: { profile?: boolean } = {}): Promise<SegmentResult> {
    return this.model.segment(image, options);
  }
}
