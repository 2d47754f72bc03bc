// preprocess (shaders/preprocess.wgsl): torchvision's GeneralizedRCNNTransform for one RGB image:
// normalise, resize (current torchvision rule: scale in float64), pad to a multiple of 32.

import source from '../../shaders/preprocess.wgsl';
import type { GpuContext } from '../gpu.ts';
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
    throw new Error(`image ${inH}x${inW} resizes to ${outH}x${outW} with min_size ${minSize} / max_size ${maxSize}: its aspect ratio is too extreme`);
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

export function planPreprocess(
  ctx: GpuContext,
  plan: ResizePlan,
  buffers: { rgb: GPUBuffer; table: GPUBuffer; output: GPUBuffer },
  label = 'preprocess',
): Dispatch {
  const kernel = ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(ctx, 3 * plan.paddedH * plan.paddedW, kernel.workgroup[0]);
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
    },
    { rgb: buffers.rgb, normalized: buffers.table, output: buffers.output },
    grid,
  );
}
