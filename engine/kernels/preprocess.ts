// preprocess (shaders/preprocess.wgsl): torchvision's GeneralizedRCNNTransform for one RGB image:
// normalise, resize (current torchvision rule: scale in float64), pad to a multiple of 32.
// An image whose bytes exceed one storage binding (a 10000x10000 photo is 300 MB; bindings are
// often 128 MiB) is processed in bands of output rows, each dispatch binding its own buffer with
// just the input rows it samples; every output value is computed exactly as in one pass.

import source from '../../shaders/preprocess.wgsl';
import type { GpuContext } from '../gpu.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

export interface ResizePlan {
  inH: number;
  inW: number;
  /** Resized, unpadded size: what boxes are clipped to. */
  outH: number;
  outW: number;
  /** Padded to a multiple of `sizeDivisible`: what the backbone sees. */
  paddedH: number;
  paddedW: number;
  scale: number;
}

/**
 * Current torchvision (eager): scale = min(min_size / min(h, w), max_size / max(h, w)) in float64,
 * then F.interpolate(scale_factor=scale, recompute_scale_factor=True): out = floor(in * scale).
 */
export function resizePlan(inH: number, inW: number, minSize = 800, maxSize = 1333, sizeDivisible = 32): ResizePlan {
  if (!(inH >= 1 && inW >= 1)) throw new Error(`image size ${inH}x${inW} is empty`);
  const scale = Math.min(minSize / Math.min(inH, inW), maxSize / Math.max(inH, inW));
  const outH = Math.floor(inH * scale);
  const outW = Math.floor(inW * scale);
  if (outH < 1 || outW < 1) {
    throw new Error(
      `image ${inH}x${inW} resizes to ${outH}x${outW} with min_size ${minSize} / max_size ${maxSize}: its aspect ratio is too extreme ` +
        "(torchvision's resize fails on it too); crop or pad it to a less elongated shape",
    );
  }
  const pad = (n: number) => Math.ceil(n / sizeDivisible) * sizeDivisible;
  return { inH, inW, outH, outW, paddedH: pad(outH), paddedW: pad(outW), scale };
}

/** (x / 255 - mean) / std for every byte value, each op rounded to float32 as torch does. */
export function normalizationTable(mean: readonly number[], std: readonly number[]): Float32Array {
  const f = Math.fround;
  const table = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++)
    for (let v = 0; v < 256; v++) table[c * 256 + v] = f(f(f(v / 255) - f(mean[c])) / f(std[c]));
  return table;
}

/** Packs RGB bytes 4 per u32 (little-endian), as the shader reads them. */
export function packRgb(rgb: Uint8Array): Uint32Array {
  const words = new Uint32Array(Math.ceil(rgb.length / 4));
  new Uint8Array(words.buffer).set(rgb);
  return words;
}

/** A band of output rows and the window of the image's RGB bytes it samples. */
export interface PreprocessBand {
  /** Padded output rows [rowStart, rowStart + rows). */
  rowStart: number;
  rows: number;
  /** RGB bytes [byteStart, byteEnd) of the image (multiples of 4; byteEnd may pass the image by up to 3). */
  byteStart: number;
  byteEnd: number;
}

const floor4 = (n: number) => Math.floor(n / 4) * 4;
const ceil4 = (n: number) => Math.ceil(n / 4) * 4;

/**
 * Splits the output rows into bands whose input windows hold at most `maxBandBytes` (one band when
 * the whole image fits, binding it exactly as a single pass would).
 */
export function preprocessBands(plan: ResizePlan, maxBandBytes: number): PreprocessBand[] {
  const rowBytes = 3 * plan.inW;
  const imageEnd = ceil4(plan.inH * rowBytes);
  if (imageEnd <= maxBandBytes) return [{ rowStart: 0, rows: plan.paddedH, byteStart: 0, byteEnd: imageEnd }];
  // Input rows output row y samples (ATen's bilinear source index, as the shader computes it),
  // widened by one row each side: a fused or unfused multiply-add moves the index by an ulp.
  const scale = Math.fround(plan.inH / plan.outH);
  const sourceRows = (y: number): [number, number] => {
    if (plan.inH === plan.outH) return [y, y];
    const i0 = Math.min(Math.floor(Math.max(Math.fround(scale * (y + 0.5) - 0.5), 0)), plan.inH - 1);
    return [Math.max(i0 - 1, 0), Math.min(i0 + 2, plan.inH - 1)];
  };
  const window = (lo: number, hi: number) => ({ byteStart: floor4(lo * rowBytes), byteEnd: Math.min(ceil4((hi + 1) * rowBytes), imageEnd) });
  const bands: PreprocessBand[] = [];
  for (let start = 0; start < plan.outH; ) {
    const [lo, firstHi] = sourceRows(start);
    let w = window(lo, firstHi);
    if (w.byteEnd - w.byteStart > maxBandBytes) {
      throw new Error(
        `a ${plan.inH}x${plan.inW} image needs ${w.byteEnd - w.byteStart} bytes of input rows for one output row, over the ${maxBandBytes}-byte storage binding limit: the image is too wide for this adapter`,
      );
    }
    let end = start + 1;
    for (; end < plan.outH; end++) {
      const next = window(lo, sourceRows(end)[1]);
      if (next.byteEnd - next.byteStart > maxBandBytes) break;
      w = next;
    }
    bands.push({ rowStart: start, rows: end - start, ...w });
    start = end;
  }
  // The zero-padded rows sample nothing: the last band writes them.
  const last = bands[bands.length - 1];
  last.rows = plan.paddedH - last.rowStart;
  return bands;
}

function preprocessDispatch(
  ctx: GpuContext,
  plan: ResizePlan,
  band: PreprocessBand,
  buffers: { rgb: GPUBuffer; table: GPUBuffer; output: GPUBuffer },
  label: string,
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(ctx, 3 * band.rows * plan.paddedW, kernel.workgroup[0]);
  return Dispatch.create(
    ctx,
    kernel,
    {
      in_h: plan.inH,
      in_w: plan.inW,
      out_h: plan.outH,
      out_w: plan.outW,
      padded_h: plan.paddedH,
      padded_w: plan.paddedW,
      scale_h: Math.fround(plan.inH / plan.outH),
      scale_w: Math.fround(plan.inW / plan.outW),
      row_pitch: rowPitch,
      row_start: band.rowStart,
      rows: band.rows,
      word_start: band.byteStart / 4,
    },
    { rgb: buffers.rgb, normalized: buffers.table, output: buffers.output },
    grid,
  );
}

/**
 * The image input of a plan: one upload buffer and preprocess dispatch per band of rows (one band
 * unless the image exceeds a storage binding). `write()` uploads an image of the planned size.
 */
export class ImageInput {
  private readonly bandBuffers: Array<PreprocessBand & { buffer: GPUBuffer }> = [];

  constructor(
    private readonly ctx: GpuContext,
    readonly plan: ResizePlan,
  ) {}

  /** The bands of rows the image is uploaded and preprocessed in (tests check the banding). */
  get bands(): readonly PreprocessBand[] {
    return this.bandBuffers.map(({ buffer: _, ...band }) => band);
  }

  /** @internal */
  addBand(band: PreprocessBand, label: string): GPUBuffer {
    const buffer = this.ctx.createBuffer(`${label} image rows ${band.rowStart}+${band.rows}`, band.byteEnd - band.byteStart);
    this.bandBuffers.push({ ...band, buffer });
    return buffer;
  }

  /** Uploads an image of the planned size: RGB (3 bytes a pixel) or RGBA (4, alpha dropped). */
  write(data: Uint8Array | Uint8ClampedArray, channels: 3 | 4): void {
    const expected = this.plan.inH * this.plan.inW * channels;
    if (data.length !== expected) throw new Error(`image data has ${data.length} bytes; the plan is for a ${this.plan.inW}x${this.plan.inH} image with ${channels} channels (${expected} bytes)`);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const rgbLength = 3 * this.plan.inH * this.plan.inW;
    for (const band of this.bandBuffers) {
      const end = Math.min(band.byteEnd, rgbLength);
      if (channels === 3) {
        this.ctx.write(band.buffer, bytes.subarray(band.byteStart, end));
        continue;
      }
      // RGBA to RGB one band at a time, so a huge image is never copied whole.
      const out = new Uint8Array(ceil4(end - band.byteStart));
      // RGB byte b is channel b - 3p of pixel p = floor(b / 3), at RGBA byte 4p + (b - 3p) = b + p.
      for (let b = band.byteStart; b < end; b++) out[b - band.byteStart] = bytes[b + Math.floor(b / 3)];
      this.ctx.write(band.buffer, out);
    }
  }

  destroy(): void {
    for (const b of this.bandBuffers) this.ctx.release(b.buffer);
    this.bandBuffers.length = 0;
  }
}

/**
 * Records torchvision's GeneralizedRCNNTransform for one image size (to float, normalise with
 * `table` = normalizationTable(mean, std), bilinear resize, zero pad to /32). Returns the image
 * input to write pixels into and the preprocessed [3, paddedH, paddedW] tensor.
 * `maxBandBytes`: the largest input window one dispatch binds (default: the adapter's limits).
 */
export function recordPreprocess(
  rec: Recorder,
  resize: ResizePlan,
  table: Tensor,
  options: { maxBandBytes?: number; label?: string } = {},
): { image: ImageInput; output: Tensor } {
  const ctx = rec.ctx;
  const label = options.label ?? 'preprocess';
  const maxBandBytes = options.maxBandBytes ?? Math.min(ctx.device.limits.maxStorageBufferBindingSize, ctx.device.limits.maxBufferSize);
  const bands = preprocessBands(resize, maxBandBytes);
  const image = rec.keep(new ImageInput(ctx, resize));
  const output = rec.tensor(label, [3, resize.paddedH, resize.paddedW]);
  for (const band of bands) {
    const rgb = image.addBand(band, label);
    rec.record(preprocessDispatch(ctx, resize, band, { rgb, table: table.buffer, output: output.buffer }, label));
  }
  return { image, output };
}
