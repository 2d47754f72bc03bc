// Mask R-CNN (torchvision maskrcnn_resnet50_fpn v1, eval) on WebGPU. The model holds the weights
// on the GPU; for each input size it compiles a plan once (pipelines, bind groups, every buffer,
// reused by liveness) and afterwards a segment() call only uploads the pixels, records the plan
// into one compute pass, submits once and reads back the final result (boxes, scores, labels and
// bit-packed masks, in one mapping). Concurrent segment() calls on one model are queued.

import { type AdapterReport } from '../device.ts';
import { GpuContext } from '../gpu.ts';
import type { Dispatch } from '../kernels/dispatch.ts';
import { normalizationTable, packRgb, planPreprocess, resizePlan, type ResizePlan } from '../kernels/preprocess.ts';
import { BufferPool } from '../planner.ts';
import { encodeRleFromBits, type RleMask } from '../rle.ts';
import { loadMaskRCNNWeights, maskrcnnParseOptions, type MaskRCNNWeights } from '../../weights-loader/maskrcnn.ts';
import { parseSafetensors, type SafetensorsFile } from '../../weights-loader/safetensors.ts';
import { ResNetFpn } from './backbone.ts';
import { resolveOptions, type MaskRCNNOptions, type ResolvedOptions } from './options.ts';
import { RoiHeads, type DetectionOutputs } from './roiHeads.ts';
import { Rpn, type Destroyable } from './rpn.ts';

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
  adapter: AdapterReport;
}

interface ImagePlan {
  resize: ResizePlan;
  pool: BufferPool;
  keep: Destroyable[];
  dispatches: Dispatch[];
  rgb: GPUBuffer;
  outputs: DetectionOutputs;
  headerStaging: GPUBuffer;
  maskStaging: GPUBuffer;
  headerBytes: number;
  maskBytes: number;
}

const MAP_READ_COPY_DST = 0x01 | 0x08;

export class MaskRCNN {
  readonly options: ResolvedOptions;
  private readonly backbone: ResNetFpn;
  private readonly rpn: Rpn;
  private readonly heads: RoiHeads;
  private readonly table: GPUBuffer;
  private readonly plans = new Map<string, ImagePlan>();
  private queue: Promise<unknown> = Promise.resolve();
  private destroyed = false;
  /** Plans kept for different input sizes before the least recently used is freed. */
  maxCachedPlans = 4;

  constructor(
    readonly ctx: GpuContext,
    readonly weights: MaskRCNNWeights,
    options: MaskRCNNOptions = {},
  ) {
    this.options = resolveOptions(options, weights.meta);
    this.backbone = new ResNetFpn(ctx, weights);
    this.rpn = new Rpn(ctx, weights.rpn);
    this.heads = new RoiHeads(ctx, weights);
    this.table = ctx.upload('normalization', normalizationTable(weights.meta.imageMean, weights.meta.imageStd));
  }

  get classes(): string[] {
    return this.weights.meta.classes;
  }

  /** Segments one image. Calls are queued: results equal sequential calls. */
  segment(image: RgbImage): Promise<SegmentResult> {
    const run = this.queue.then(() => this.run(image));
    this.queue = run.catch(() => undefined);
    return run;
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

  private async run(image: RgbImage): Promise<SegmentResult> {
    const t0 = performance.now();
    const channels = this.checkImage(image);
    this.ctx.assertAlive();
    const plan = await this.ctx.checked('planning Mask R-CNN', () => this.planFor(image.height, image.width));
    const t1 = performance.now();

    const rgb = channels === 3 ? image.data : dropAlpha(image.data);
    this.ctx.write(plan.rgb, packRgb(rgb instanceof Uint8Array ? rgb : new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength)));
    const device = this.ctx.device;
    const { header, bits } = await this.ctx.checked('running Mask R-CNN', async () => {
      const encoder = device.createCommandEncoder({ label: 'maskrcnn' });
      const pass = encoder.beginComputePass({ label: 'maskrcnn' });
      for (const d of plan.dispatches) d.record(pass);
      pass.end();
      encoder.copyBufferToBuffer(plan.outputs.keptCount.buffer, 0, plan.headerStaging, 0, 4);
      encoder.copyBufferToBuffer(plan.outputs.result.buffer, 0, plan.headerStaging, 16, plan.headerBytes - 16);
      encoder.copyBufferToBuffer(plan.outputs.masks.buffer, 0, plan.maskStaging, 0, plan.maskBytes);
      device.queue.submit([encoder.finish()]);
      await Promise.all([plan.headerStaging.mapAsync(0x0001), plan.maskStaging.mapAsync(0x0001)]);
      const h = new Float32Array(plan.headerStaging.getMappedRange(0, plan.headerBytes).slice(0));
      const b = new Uint32Array(plan.maskStaging.getMappedRange(0, plan.maskBytes).slice(0));
      plan.headerStaging.unmap();
      plan.maskStaging.unmap();
      return { header: h, bits: b };
    });
    const t2 = performance.now();

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
      adapter: this.ctx.report,
    };
  }

  /** The compiled plan for an original image size (built on first use, cached LRU). */
  planFor(height: number, width: number): ImagePlan {
    const key = `${height}x${width}`;
    const cached = this.plans.get(key);
    if (cached) {
      this.plans.delete(key);
      this.plans.set(key, cached);
      return cached;
    }
    const o = this.options;
    const resize = resizePlan(height, width, o.minSize, o.maxSize);
    const limit = this.ctx.device.limits.maxStorageBufferBindingSize;
    const biggest = 4 * Math.max(64, this.weights.stem.cout) * (resize.paddedH / 2) * (resize.paddedW / 2);
    if (biggest > limit) {
      throw new Error(
        `a ${height}x${width} image resized to ${resize.outH}x${resize.outW} needs a ${Math.round(biggest / 2 ** 20)} MiB feature map, over this adapter's ${Math.round(limit / 2 ** 20)} MiB storage binding limit; use a smaller maxSize`,
      );
    }
    const ctx = this.ctx;
    const pool = new BufferPool(ctx);
    const keep: Destroyable[] = [pool];
    const dispatches: Dispatch[] = [];
    try {
      const rgb = ctx.createBuffer(`image ${key}`, Math.ceil((height * width * 3) / 4) * 4);
      keep.push({ destroy: () => ctx.release(rgb) });
      const input = pool.tensor('input', [3, resize.paddedH, resize.paddedW]);
      dispatches.push(planPreprocess(ctx, resize, { rgb, table: this.table, output: input.buffer }));
      const { levels } = this.backbone.plan(pool, { ...input, c: 3, h: resize.paddedH, w: resize.paddedW }, dispatches);
      pool.release(input);
      const proposals = this.rpn.plan(pool, levels, resize, o, dispatches, keep);
      const outputs = this.heads.plan(pool, levels, proposals, resize, { height, width }, o, dispatches, keep);
      const headerBytes = 16 + outputs.maxDetections * 6 * 4;
      const maskBytes = outputs.masks.buffer.size;
      const headerStaging = ctx.createBuffer(`result staging ${key}`, headerBytes, MAP_READ_COPY_DST);
      const maskStaging = ctx.createBuffer(`mask staging ${key}`, maskBytes, MAP_READ_COPY_DST);
      keep.push({ destroy: () => (ctx.release(headerStaging), ctx.release(maskStaging)) });
      keep.push(...dispatches);
      const plan: ImagePlan = { resize, pool, keep, dispatches, rgb, outputs, headerStaging, maskStaging, headerBytes, maskBytes };
      this.plans.set(key, plan);
      while (this.plans.size > this.maxCachedPlans) {
        const [oldest] = this.plans.keys();
        this.destroyPlan(oldest);
      }
      return plan;
    } catch (e) {
      for (const d of dispatches) d.destroy();
      for (const k of keep) k.destroy();
      throw e;
    }
  }

  private destroyPlan(key: string): void {
    const plan = this.plans.get(key);
    if (!plan) return;
    this.plans.delete(key);
    for (const k of plan.keep) k.destroy();
  }

  /** MACs of the convolutional/linear layers for an original image size (dense count). */
  macs(height: number, width: number): { backbone: number; rpn: number } {
    const r = resizePlan(height, width, this.options.minSize, this.options.maxSize);
    const grids = [4, 8, 16, 32].map((s) => ({ h: r.paddedH / s, w: r.paddedW / s }));
    grids.push({ h: Math.floor((grids[3].h - 1) / 2) + 1, w: Math.floor((grids[3].w - 1) / 2) + 1 });
    return { backbone: this.backbone.macs(r.paddedH, r.paddedW), rpn: this.rpn.macs(grids) };
  }

  /** Frees every GPU buffer this model allocated (weights and all plans). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const key of [...this.plans.keys()]) this.destroyPlan(key);
    this.backbone.destroy();
    this.rpn.destroy();
    this.heads.destroy();
    this.ctx.release(this.table);
  }
}

function dropAlpha(rgba: Uint8Array | Uint8ClampedArray): Uint8Array {
  const n = rgba.length / 4;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = rgba[i * 4];
    out[i * 3 + 1] = rgba[i * 4 + 1];
    out[i * 3 + 2] = rgba[i * 4 + 2];
  }
  return out;
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
