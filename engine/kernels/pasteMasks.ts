// PasteMasks (shaders/paste_masks.wgsl): torchvision's paste_masks_in_image(masks, boxes,
// (H, W), padding=1) followed by binarisation at `prob > threshold` (0.5 by default; strictly
// greater, as `masks > 0.5`), written as bit-packed rows. Compile-time: mask size M and padding.
// Run-time uniforms: the original image size, the planned maximum detections, the threshold.
// The detection count is read on the GPU. Two dispatches: expand the boxes (also exposed, in
// `pasteBoxes`, for consumers that want the integer boxes), then one invocation per output word.
// Pixel bits equal torch 1.13's `paste_masks_in_image(...) > threshold` exactly: the shader decides
// on the exact 4-term sum, torch on that sum rounded to double, which can differ only when the sum
// is within ~2^-53 of the float32 rounding midpoint above the threshold.

import exactF32 from '../../shaders/exact_f32.wgsl';
import body from '../../shaders/paste_masks.wgsl';

const source = `${exactF32}\n${body}`;
import type { GpuContext } from '../gpu.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

const f = Math.fround;

export interface PasteMasksSpec {
  /** Rows of the probs/boxes buffers and masks in the output. */
  maxMasks: number;
  /** M: masks are M x M (28 for Mask R-CNN). */
  maskSize?: number;
  /** paste_masks_in_image's padding (1 in torchvision's postprocess). */
  padding?: number;
}

export interface PasteMasksInputs {
  /** [maxMasks, M, M] f32 probabilities (sigmoid of the predicted class). */
  probs: Tensor;
  /** [maxMasks, 4] (x1, y1, x2, y2) f32 in original-image coordinates. */
  boxes: Tensor;
  /** u32 at element 0: masks in use; the rest come out all zero. */
  count: Tensor;
}

export interface PasteMasksImage {
  /** The original image size. */
  height: number;
  width: number;
  /** A pixel is set when its pasted probability is > threshold (default 0.5, as `masks > 0.5`). */
  threshold?: number;
}

/** Words per PasteBox record in `pasteBoxes`. */
export const PASTE_BOX_WORDS = 8;

/** One expanded box as the first dispatch writes it. */
export interface PasteBox {
  /** Integer box (inclusive corners) the M+2p mask is resized onto, before clipping. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  /** Resized mask size, max(x1 - x0 + 1, 1) x max(y1 - y0 + 1, 1). */
  width: number;
  height: number;
  scaleX: number;
  scaleY: number;
}

/** u32 words per bit-packed mask row. */
export const maskRowWords = (width: number): number => Math.ceil(width / 32);

/** Decodes `count` records read back from `PasteMasks.pasteBoxes`. */
export function decodePasteBoxes(words: Uint32Array, count: number): PasteBox[] {
  const i = new Int32Array(words.buffer, words.byteOffset, words.length);
  const fl = new Float32Array(words.buffer, words.byteOffset, words.length);
  return Array.from({ length: count }, (_, n) => {
    const o = n * PASTE_BOX_WORDS;
    return { x0: i[o], y0: i[o + 1], x1: i[o + 2], y1: i[o + 3], width: i[o + 4], height: i[o + 5], scaleX: fl[o + 6], scaleY: fl[o + 7] };
  });
}

/** Half the distance from t (as float32) to the next float32 above it. */
function halfUlpAbove(t: number): number {
  const b = new Float32Array([t]);
  const u = new Uint32Array(b.buffer);
  const v = b[0];
  u[0] += v >= 0 ? 1 : -1;
  if (v === 0) return 0; // half the smallest subnormal is not a float32; S > 0 is the test then
  return (b[0] - v) / 2;
}

export class PasteMasks {
  readonly maskSize: number;
  readonly padding: number;
  /** [maxMasks] x PasteBox (PASTE_BOX_WORDS u32 each), written by every run. */
  readonly pasteBoxes: GPUBuffer;

  constructor(
    private readonly ctx: GpuContext,
    readonly spec: PasteMasksSpec,
    readonly label = 'pasteMasks',
  ) {
    this.maskSize = spec.maskSize ?? 28;
    this.padding = spec.padding ?? 1;
    if (!(spec.maxMasks >= 1) || !(this.maskSize >= 1) || !(this.padding >= 0) || !Number.isInteger(this.maskSize) || !Number.isInteger(this.padding)) {
      throw new Error(`${label}: maxMasks ${spec.maxMasks}, mask size ${this.maskSize}, padding ${this.padding} must be positive integers (padding >= 0)`);
    }
    this.pasteBoxes = ctx.createBuffer(`${label}.pasteBoxes`, spec.maxMasks * PASTE_BOX_WORDS * 4);
  }

  /** Bytes of the bit-packed output for an image: maxMasks x H x ceil(W/32) u32. */
  outputBytes(image: { height: number; width: number }): number {
    return this.spec.maxMasks * image.height * maskRowWords(image.width) * 4;
  }

  /**
   * Records two dispatches: expand the boxes into `pasteBoxes`, then paste and binarise. Returns
   * the masks, [maxMasks, H, ceil(W / 32)] u32, bit x % 32 of word x / 32 = pixel x (LSB first).
   */
  record(rec: Recorder, io: PasteMasksInputs, image: PasteMasksImage): Tensor {
    const { ctx, spec, label } = this;
    const { height, width } = image;
    const threshold = f(image.threshold ?? 0.5);
    if (!(height >= 1 && width >= 1 && height < 65536 && width < 65536)) throw new Error(`${label}: image ${height}x${width} must be between 1 and 65535 pixels a side`);
    if (!(threshold >= 0)) throw new Error(`${label}: threshold ${threshold} must be >= 0: pixels outside a box are 0 and are never set (torchvision binarises at 0.5)`);
    const maxBinding = ctx.device.limits.maxStorageBufferBindingSize;
    if (this.outputBytes(image) > maxBinding) {
      throw new Error(`${label}: ${this.outputBytes(image)} bytes of masks for ${spec.maxMasks} detections at ${height}x${width} exceed the ${maxBinding}-byte storage binding limit; lower the detections per image or the image size`);
    }
    const consts = { MASK: this.maskSize, PADDING: this.padding };
    const expand = ctx.kernel({ source, label: `${label}.expand`, entryPoint: 'expand_boxes', consts });
    const paste = ctx.kernel({ source, label, entryPoint: 'main', consts });
    const rowWords = maskRowWords(width);
    const { grid, rowPitch } = elementGrid(ctx, spec.maxMasks * height * rowWords, paste.workgroup[0]);
    const params = {
      max_detections: spec.maxMasks,
      height,
      width,
      row_words: rowWords,
      expand_scale: f((this.maskSize + 2 * this.padding) / this.maskSize),
      threshold,
      threshold_half_ulp: halfUlpAbove(threshold),
      zero: 0,
      row_pitch: rowPitch,
    };
    const output = rec.tensor(label, [spec.maxMasks, height, rowWords]);
    const resources = {
      masks: io.probs.buffer,
      boxes: io.boxes.buffer,
      detection_count: io.count.buffer,
      paste_boxes: this.pasteBoxes,
      bits: output.buffer,
    };
    rec.record(
      Dispatch.create(ctx, expand, params, resources, [ceilDiv(spec.maxMasks, expand.workgroup[0])]),
      Dispatch.create(ctx, paste, params, resources, grid),
    );
    return output;
  }

  destroy(): void {
    this.ctx.release(this.pasteBoxes);
  }
}
