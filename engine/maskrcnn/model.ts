// Mask R-CNN (torchvision maskrcnn_resnet50_fpn v1, eval) on WebGPU. The model holds the weights
// on the GPU; for each input size it compiles a plan once (pipelines, bind groups, every buffer,
// reused by liveness) and afterwards a segment() call only uploads the pixels, records the plan
// into one command encoder, submits once and reads back the final result (boxes, scores, labels and
// bit-packed masks, in one mapping). Concurrent segment() calls on one model are queued.
// Each run also reports how long each stage took (stages.ts): from GPU timestamps when the device
// has them (one compute pass per stage, same single submit), else with { profile: true } from
// the CPU, submitting stage by stage (running a plan: execute.ts).

import { type AdapterReport } from '../device.ts';
import { GpuContext } from '../gpu.ts';
import { normalizationTable, recordPreprocess, resizePlan, type PreprocessBand, type ResizePlan } from '../kernels/preprocess.ts';
import type { Tensor } from '../planner.ts';
import { Recorder } from '../recorder.ts';
import { encodeRleFromBits, type RleMask } from '../rle.ts';
import { loadMaskRCNNWeights, maskrcnnParseOptions, type MaskRCNNWeights } from '../../weights-loader/maskrcnn.ts';
import { parseSafetensors, type SafetensorsFile } from '../../weights-loader/safetensors.ts';
import { ResNetFpn } from './backbone.ts';
import { resolveOptions, type MaskRCNNOptions, type ResolvedOptions } from './options.ts';
import { RoiHeads } from './roiHeads.ts';
import { Rpn } from './rpn.ts';
import { executePlan, type ImagePlan, type PlanOutputs, type StageTimestamps } from './execute.ts';
import { compileKernels, compileWantedKernels, type CompileReport } from '../tiers.ts';
import { kernelKey } from '../kernelTiers.ts';
import { STAGES, TIMESTAMP_BYTES, TIMESTAMP_COUNT, type StagesMs } from './stages.ts';

export interface RgbImage {
  width: number;
  height: number;
  /** RGB bytes, row-major (3 per pixel); RGBA (4 per pixel, e.g. canvas ImageData) is accepted too. */
  data: Uint8Array | Uint8ClampedArray;
}

export interface Detection {
  /** x1, y1, x2, y2 in original image pixels. */
  box: [number, number, number, number];
  label: number;
  labelName: string;
  score: number;
  /** Binary mask (probability > maskThreshold) as COCO uncompressed RLE, column-major. */
  mask: RleMask;
}

export interface SegmentResult {
  image: { width: number; height: number };
  detections: Detection[];
  /** plan: compiling the plan (first image of a size only); gpu: upload to mapped results; masks: RLE. */
  timingsMs: { total: number; plan: number; gpu: number; masks: number };
  /**
   * Milliseconds per stage (engine/maskrcnn/stages.ts): GPU timestamps when the device has the
   * 'timestamp-query' feature; else, with { profile: true }, CPU time of stage-by-stage submits
   * (slower: a round trip per stage); else null.
   */
  stagesMs: StagesMs | null;
  stagesSource: 'gpu-timestamps' | 'cpu' | null;
  adapter: AdapterReport;
}

export interface SegmentOptions {
  /** Without timestamp queries, time each stage by submitting it alone and waiting for it. */
  profile?: boolean;
}

/** What a compiled plan for one input size holds (for tests and tools: the public view of a plan). */
export interface PlanSummary {
  resize: ResizePlan;
  /** Bands of rows the image is uploaded and preprocessed in (one unless it exceeds a storage binding). */
  bands: readonly PreprocessBand[];
  /** Dispatches per stage. */
  dispatches: Record<(typeof STAGES)[number], number>;
  /** Intermediate buffers of the plan's pool and their bytes (reused by liveness). */
  pool: { buffers: number; bytes: number };
  /** Whether quick stand-ins replace tuned kernels in the plan (the context's 'tiered' kernels, engine/tiers.ts). */
  quickStandIns: boolean;
}

const MAP_READ_COPY_DST = 0x01 | 0x08;
const QUERY_RESOLVE_COPY_SRC = 0x200 | 0x04;

export class MaskRCNN {
  readonly options: ResolvedOptions;
  private readonly backbone: ResNetFpn;
  private readonly rpn: Rpn;
  private readonly heads: RoiHeads;
  private readonly table: Tensor;
  /** Present when the device has 'timestamp-query': one query set reused by every run. */
  private readonly timestamps?: StageTimestamps;
  private readonly plans = new Map<string, ImagePlan>();
  private queue: Promise<unknown> = Promise.resolve();
  private destroyed = false;
  /** Plans kept for different input sizes before the least recently used is freed (the one in use always stays). */
  maxCachedPlans = 4;
  /**
   * After a run that used quick stand-ins (the context's 'tiered' kernels, engine/tiers.ts), compile
   * the tuned kernels on a second device in the background; runs after it finished use them. Needs
   * `ctx.acquireAnother` (set by GpuContext.create). Off, or without a second device: stand-ins stay
   * until `compileTunedKernels()` is called (the CLI compiles in a process of its own).
   */
  backgroundCompile = true;
  /**
   * On a plan's first run with stand-ins, compile its kernels on a second device too, from the end
   * (bench/NOTES.md 17). Default on in Node, where each Dawn device has a queue thread of its own;
   * off in a browser, where Chromium's GPU process served the two devices in turn (the demo's first
   * result went from 13.6 s to 19.6 s with it).
   */
  helpCompile: boolean;
  private compiling: Promise<CompileReport> | undefined;
  /** Largest window of the input image one preprocess dispatch binds (default: the adapter's limits); lowered only by tests. */
  inputBandBytes: number | undefined;

  constructor(
    readonly ctx: GpuContext,
    readonly weights: MaskRCNNWeights,
    options: MaskRCNNOptions = {},
  ) {
    this.options = resolveOptions(options, weights.meta);
    this.helpCompile = ctx.report.runtime === 'node-dawn';
    this.backbone = new ResNetFpn(ctx, weights, this.options.precision);
    this.rpn = new Rpn(ctx, weights.rpn, this.options.precision);
    this.heads = new RoiHeads(ctx, weights, this.options.precision);
    this.table = { buffer: ctx.upload('normalization', normalizationTable(weights.meta.imageMean, weights.meta.imageStd)), shape: [256, 3], label: 'normalization' };
    if (ctx.device.features.has('timestamp-query')) {
      this.timestamps = {
        querySet: ctx.device.createQuerySet({ label: 'maskrcnn stage timestamps', type: 'timestamp', count: TIMESTAMP_COUNT }),
        resolve: ctx.createBuffer('maskrcnn stage timestamps', TIMESTAMP_BYTES, QUERY_RESOLVE_COPY_SRC),
      };
    }
  }

  get classes(): string[] {
    return this.weights.meta.classes;
  }

  /** Segments one image. Calls are queued: results equal sequential calls. */
  segment(image: RgbImage, options: SegmentOptions = {}): Promise<SegmentResult> {
    return this.queued(() => this.run(image, options.profile ?? false));
  }

  private checkImage(image: RgbImage): 3 | 4 {
    if (this.destroyed) throw new Error('this model was destroyed; load it again');
    const { width, height, data } = image ?? ({} as RgbImage);
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new Error(`image size ${width}x${height} is not a positive integer size`);
    }
    if (!data || (data.length !== width * height * 3 && data.length !== width * height * 4)) {
      throw new Error(`image data has ${data?.length} bytes; a ${width}x${height} RGB image needs ${width * height * 3} (or ${width * height * 4} for RGBA)`);
    }
    return data.length === width * height * 3 ? 3 : 4;
  }

  private async run(image: RgbImage, profile: boolean): Promise<SegmentResult> {
    const t0 = performance.now();
    const channels = this.checkImage(image);
    this.ctx.assertAlive();
    // A plan whose creation raised a GPU error (out of memory, validation) holds invalid buffers: never keep it.
    const plan = await this.ctx.checked('planning Mask R-CNN', () => this.plan(image.height, image.width)).catch((e: unknown) => {
      this.destroyPlan(`${image.height}x${image.width}`);
      throw e;
    });
    const t1 = performance.now();

    plan.image.write(image.data, channels);
    // A first run on a new machine: lavapipe compiles each pipeline at its first dispatch, one at a
    // time on the queue's thread. A second device compiles the plan's kernels from the last one
    // backwards meanwhile (into the driver's disk cache), so the two threads meet in the middle; it
    // is dropped when the run ends.
    let helper: { ctx?: GpuContext; done: boolean } | undefined;
    if (plan.tiers.standIns && !plan.tiers.helped && this.ctx.acquireAnother && this.helpCompile) {
      plan.tiers.helped = true;
      const h: { ctx?: GpuContext; done: boolean } = (helper = { done: false });
      const specs = [...new Map(plan.stages.flat().map((d) => [kernelKey(d.spec), d.spec])).values()].reverse();
      this.ctx
        .acquireAnother()
        .then((ctx) => {
          h.ctx = ctx;
          if (!h.done) return compileKernels(ctx, specs);
        })
        .catch(() => undefined)
        .finally(() => h.ctx?.device.destroy());
    }
    const finishHelper = () => {
      if (!helper) return;
      helper.done = true;
      helper.ctx?.device.destroy();
    };
    const { header, bits, stagesMs, stagesSource } = await this.ctx
      .checked('running Mask R-CNN', () => executePlan(this.ctx.device, plan, this.timestamps, profile))
      .finally(finishHelper);
    const t2 = performance.now();
    // Only off this device's queue: on the same one, the compile would hold up the next calls.
    if (plan.tiers.standIns && this.backgroundCompile && this.ctx.acquireAnother && !this.compiling) {
      this.compileTunedKernels().catch((e: unknown) => console.warn(`maskgpu: compiling the tuned kernels in the background failed (${(e as Error).message}); the quick ones stay in use`));
    }

    const count = new Uint32Array(header.buffer, 0, 1)[0];
    const rows = header.subarray(4);
    const { width, height } = image;
    const rowWords = Math.ceil(width / 32);
    const detections: Detection[] = [];
    for (let i = 0; i < count; i++) {
      const r = rows.subarray(i * 6, i * 6 + 6);
      const label = Math.round(r[5]);
      detections.push({
        box: [r[0], r[1], r[2], r[3]],
        label,
        labelName: this.classes[label] ?? `class_${label}`,
        score: r[4],
        mask: encodeRleFromBits(bits.subarray(i * height * rowWords, (i + 1) * height * rowWords), height, width, rowWords),
      });
    }
    const t3 = performance.now();
    return {
      image: { width, height },
      detections,
      timingsMs: { total: t3 - t0, plan: t1 - t0, gpu: t2 - t1, masks: t3 - t2 },
      stagesMs,
      stagesSource,
      adapter: this.ctx.report,
    };
  }

  /**
   * Compiles (or takes from the cache) the plan for an original image size and describes it: the
   * resize, the upload bands, dispatches per stage, the pool's buffers. Later segment() calls of
   * that size reuse it.
   */
  async prepare(height: number, width: number): Promise<PlanSummary> {
    const plan = await this.queued(() =>
      this.ctx.checked('planning Mask R-CNN', () => this.plan(height, width)).catch((e: unknown) => {
        this.destroyPlan(`${height}x${width}`);
        throw e;
      }),
    );
    return {
      resize: plan.resize,
      bands: plan.image.bands,
      dispatches: Object.fromEntries(STAGES.map((s, i) => [s, plan.stages[i].length])) as PlanSummary['dispatches'],
      pool: plan.rec.pool.stats,
      quickStandIns: plan.tiers.standIns,
    };
  }

  /**
   * Compiles the tuned kernels that quick stand-ins replace in this model's plans (on a second
   * device when one can be had) and resolves when plans built from then on use them; the next run
   * rebuilds its plan. Resolves at once (compiled 0) when nothing is waiting; a compile already under
   * way is shared. `maskgpu segment --prepare` and apps that would rather pay at load call it after
   * `prepare()`.
   */
  compileTunedKernels(): Promise<CompileReport> {
    if (!this.compiling) {
      const run = compileWantedKernels(this.ctx);
      this.compiling = run;
      run.then(
        () => (this.compiling = undefined),
        () => (this.compiling = undefined),
      );
    }
    return this.compiling;
  }

  private queued<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The compiled plan for an original image size (built on first use, cached LRU). */
  private plan(height: number, width: number): ImagePlan {
    if (this.destroyed) throw new Error('this model was destroyed; load it again');
    const key = `${height}x${width}`;
    let cached = this.plans.get(key);
    // A plan with quick stand-ins is rebuilt once tuned kernels were compiled since.
    if (cached && cached.tiers.standIns && cached.tiers.generation !== this.ctx.tierState.generation) {
      this.destroyPlan(key);
      cached = undefined;
    }
    if (cached) {
      this.plans.delete(key);
      this.plans.set(key, cached);
      return cached;
    }
    const o = this.options;
    const resize = resizePlan(height, width, o.minSize, o.maxSize);
    this.checkLimits(height, width, resize);
    const ctx = this.ctx;
    const original = { height, width };
    const rec = new Recorder(ctx, `maskrcnn ${key}`);
    const tiersBefore = ctx.tierState;
    try {
      // The data flow, stage by stage; each stage releases what it alone consumed.
      rec.stage('preprocess');
      const { image, output: input } = recordPreprocess(rec, resize, this.table, { maxBandBytes: this.inputBandBytes, label: `preprocess ${key}` });
      rec.stage('backbone');
      const c = this.backbone.recordBody(rec, input);
      rec.release(input);
      rec.stage('fpn');
      const levels = this.backbone.recordFpn(rec, c);
      rec.stage('rpn');
      const proposals = this.rpn.record(rec, levels, resize, o);
      rec.release(levels[4]);
      rec.stage('boxHead');
      const fpn = levels.slice(0, 4);
      const det = this.heads.recordBoxes(rec, fpn, proposals, resize, original, o);
      rec.stage('maskHead');
      const probs = this.heads.recordMaskProbs(rec, fpn, det, resize);
      rec.release(det.boxes);
      rec.stage('paste');
      const masks = this.heads.recordPaste(rec, probs, det, original, o);
      rec.release(probs);

      const outputs: PlanOutputs = { maxDetections: det.maxDetections, keptCount: det.keptCount, result: det.result, masks };
      const headerBytes = 16 + outputs.maxDetections * 6 * 4;
      const timestampOffset = Math.ceil(headerBytes / 8) * 8;
      const maskBytes = masks.buffer.size;
      const headerStaging = ctx.createBuffer(`result staging ${key}`, this.timestamps ? timestampOffset + TIMESTAMP_BYTES : headerBytes, MAP_READ_COPY_DST);
      const maskStaging = ctx.createBuffer(`mask staging ${key}`, maskBytes, MAP_READ_COPY_DST);
      rec.keep({ destroy: () => (ctx.release(headerStaging), ctx.release(maskStaging)) });
      const tiers = { standIns: ctx.tierState.standIns !== tiersBefore.standIns, generation: tiersBefore.generation };
      const plan: ImagePlan = { resize, rec, stages: rec.stages(STAGES), image, outputs, headerStaging, maskStaging, headerBytes, timestampOffset, maskBytes, tiers };
      this.plans.set(key, plan);
      // The plan just built is about to be used: even maxCachedPlans 0 keeps it until the next size.
      while (this.plans.size > Math.max(1, this.maxCachedPlans)) {
        const [oldest] = this.plans.keys();
        this.destroyPlan(oldest);
      }
      return plan;
    } catch (e) {
      rec.destroy();
      throw e;
    }
  }

  /** Refuses sizes whose largest feature map or whose masks exceed a storage binding, naming the fix. */
  private checkLimits(height: number, width: number, resize: ResizePlan): void {
    const limit = this.ctx.device.limits.maxStorageBufferBindingSize;
    const biggest = 4 * Math.max(64, this.weights.stem.cout) * (resize.paddedH / 2) * (resize.paddedW / 2);
    if (biggest > limit) {
      throw new Error(
        `a ${height}x${width} image resized to ${resize.outH}x${resize.outW} needs a ${Math.round(biggest / 2 ** 20)} MiB feature map, over this adapter's ${Math.round(limit / 2 ** 20)} MiB storage binding limit; use a smaller maxSize`,
      );
    }
    // Masks are pasted at the original size, one bit a pixel per possible detection.
    const o = this.options;
    const maskBytesPerDetection = height * Math.ceil(width / 32) * 4;
    if (o.detectionsPerImage * maskBytesPerDetection > limit) {
      const fits = Math.floor(limit / maskBytesPerDetection);
      throw new Error(
        `a ${height}x${width} image needs ${Math.round((o.detectionsPerImage * maskBytesPerDetection) / 2 ** 20)} MiB for the masks of ${o.detectionsPerImage} detections at full size, ` +
          `over this adapter's ${Math.round(limit / 2 ** 20)} MiB storage binding limit: ` +
          (fits ? `lower detectionsPerImage to ${fits} or less, or downscale the image` : 'downscale the image'),
      );
    }
  }

  private destroyPlan(key: string): void {
    const plan = this.plans.get(key);
    if (!plan) return;
    this.plans.delete(key);
    plan.rec.destroy();
  }

  /** Frees every GPU buffer this model allocated (weights and all plans). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const key of [...this.plans.keys()]) this.destroyPlan(key);
    this.backbone.destroy();
    this.rpn.destroy();
    this.heads.destroy();
    this.ctx.release(this.table.buffer);
    if (this.timestamps) {
      this.timestamps.querySet.destroy();
      this.ctx.release(this.timestamps.resolve);
    }
  }
}

/**
 * Loads Mask R-CNN weights (a safetensors file's bytes, a parsed file, or loaded weights) onto a
 * device (a GpuContext, or a GPUDevice the app owns) and returns a model ready to segment.
 */
export async function loadMaskRCNN(
  target: GpuContext | GPUDevice | undefined,
  weights: Uint8Array | ArrayBuffer | SafetensorsFile | MaskRCNNWeights,
  options: MaskRCNNOptions = {},
): Promise<MaskRCNN> {
  const ctx = target instanceof GpuContext ? target : target ? GpuContext.fromDevice(target) : await GpuContext.create();
  const loaded =
    weights instanceof Uint8Array || weights instanceof ArrayBuffer
      ? loadMaskRCNNWeights(parseSafetensors(weights instanceof Uint8Array ? weights : new Uint8Array(weights), maskrcnnParseOptions))
      : 'tensors' in weights
        ? loadMaskRCNNWeights(weights)
        : weights;
  return ctx.checked('loading Mask R-CNN weights', () => new MaskRCNN(ctx, loaded, options));
}
