// Which register tile and workgroup shape conv2d uses, per class of convolution and per adapter.
// The best tile differs between adapters (a CPU adapter wants uniform weight loads and large
// register tiles; a GPU wants enough invocations per workgroup) and between a 7x7 stem over 3
// channels, a 1x1 over 2048 and a 3x3 on a 25x34 map, so `npm run tune` (bench/tune.ts) measures
// the candidates on ResNet-50 shapes and caches the best per class for the adapter. Lookup order:
// a tile given in the conv's spec, else the GpuContext's table (`ctx.setConvTiling`, defaults
// otherwise). This module holds no state and reads no file: in Node, io/tiles.ts reads and writes
// the tuner's cache file, and the CLI and benchmarks pass what it holds to the context.
// Any direct tile gives bit-identical results (each output sums its K terms in the same order), so the
// choice moves speed only; a Winograd tile (ConvTile.winograd) rounds differently, within its bound.

import source from '../../shaders/conv2d.wgsl';
import { winogradInputShader, winogradOutputShader } from './winograd.ts';
import type { AdapterReport } from '../device.ts';
import { fnv1a } from '../hash.ts';

export interface ConvTile {
  /** Output channels per invocation: 1, 2 or a multiple of 4. */
  tm: number;
  /** Output pixels per invocation. */
  tn: number;
  /** Invocations per workgroup along pixels. */
  wgX: number;
  /** Invocations per workgroup along channels (1 makes the weight loads uniform). */
  wgY: number;
  /**
   * Winograd F(winograd x winograd, 3x3) instead of the direct conv (engine/kernels/winograd.ts):
   * only for the 3x3 stride-1 classes; tm, tn, wgX and wgY are then its batched GEMM's tile
   * (output channels x tiles per invocation).
   */
  winograd?: 2 | 4;
}

/**
 * tiny: fewer than 256 output pixels in the batch (the coarsest FPN levels, unit tests): a small
 * tile wastes less on clamped rows and columns and compiles in a fraction of the time.
 * stem: fewer than 8 input channels (the 7x7 over RGB): the channel loop is too short to hide the
 * per-tap work. pointwise: 1x1 kernels; spatial: larger kernels. small: fewer than 4096 output
 * pixels (ResNet stages 3 and 4 at 800x1088, the RPN on the coarse levels), where a big tile leaves
 * workgroups idle on a GPU. winograd: 3x3 kernels at stride 1 and dilation 1 (the backbone's
 * non-first 3x3s, the FPN outputs, the RPN head, the mask head), which may run as Winograd
 * F(2,3) or F(4,3); spatial: the other kernels larger than 1x1.
 */
export const CONV_CLASSES = ['tiny', 'stem', 'pointwise-large', 'pointwise-small', 'spatial-large', 'spatial-small', 'winograd-large', 'winograd-small'] as const;
export type ConvClass = (typeof CONV_CLASSES)[number];
export type ConvTiling = Partial<Record<ConvClass, ConvTile>>;

export function convClass(cin: number, kh: number, kw: number, outputPixels: number, stride: [number, number] = [1, 1], dilation: [number, number] = [1, 1]): ConvClass {
  if (outputPixels < 256) return 'tiny';
  if (cin < 8) return 'stem';
  const size = outputPixels < 4096 ? 'small' : 'large';
  if (kh === 1 && kw === 1) return `pointwise-${size}`;
  const winograd = kh === 3 && kw === 3 && stride[0] === 1 && stride[1] === 1 && dilation[0] === 1 && dilation[1] === 1;
  return winograd ? `winograd-${size}` : `spatial-${size}`;
}

/**
 * Built in: on Mesa lavapipe `npm run tune` finds 16x8 per invocation best for every class but
 * tiny (bench/NOTES.md); of its two workgroup shapes (8x1 and 32x1, within noise of each other)
 * the default takes 32x1 so that a GPU without a tuned table still gets 32-invocation workgroups.
 */
const LARGE_TILE: ConvTile = { tm: 16, tn: 8, wgX: 32, wgY: 1 };
export const DEFAULT_CONV_TILING: Record<ConvClass, ConvTile> = {
  tiny: { tm: 4, tn: 4, wgX: 32, wgY: 1 },
  stem: LARGE_TILE,
  'pointwise-large': LARGE_TILE,
  'pointwise-small': LARGE_TILE,
  'spatial-large': LARGE_TILE,
  'spatial-small': LARGE_TILE,
  'winograd-large': LARGE_TILE,
  'winograd-small': LARGE_TILE,
};

/** The direct tile a conv of a Winograd class takes when it cannot run Winograd (f16 weights). */
export const DIRECT_FALLBACK_TILE: ConvTile = LARGE_TILE;

export function tileName(t: ConvTile): string {
  return t.winograd ? `F(${t.winograd},3) ${t.tm}ch x${t.tn}/wg${t.wgX}x${t.wgY}` : `${t.tm}x${t.tn}/wg${t.wgX}x${t.wgY}`;
}

/** Throws unless the kernel can run `tile` (TM must split evenly into vec4 weight loads). */
export function checkConvTile(tile: ConvTile, maxInvocations = 256): void {
  const { tm, tn, wgX, wgY, winograd } = tile;
  const ok =
    [tm, tn, wgX, wgY].every((v) => Number.isInteger(v) && v >= 1) && (tm === 1 || tm === 2 || tm % 4 === 0) && tm <= 64 && tn <= 64 && wgX * wgY <= maxInvocations;
  if (!ok) {
    throw new Error(
      `conv tile ${JSON.stringify(tile)} is not usable: tm must be 1, 2 or a multiple of 4 (at most 64), tn at most 64, and wgX*wgY at most ${maxInvocations} invocations`,
    );
  }
  if (winograd !== undefined && winograd !== 2 && winograd !== 4) {
    throw new Error(`conv tile ${JSON.stringify(tile)} is not usable: winograd must be 2 (F(2x2,3x3)) or 4 (F(4x4,3x3))`);
  }
}

/** Tuned tiles belong to one adapter and one revision of the kernel (a changed shader re-tunes). */
export function convTilingKey(report: AdapterReport): string {
  return [report.vendor, report.architecture, report.device, report.description, report.runtime, `conv2d.wgsl ${kernelRevision()}`].join(' | ');
}

function kernelRevision(): string {
  const e = { RELU: true, RESIDUAL: false, RESIDUAL_HALF: false, DYNAMIC_BATCH: false };
  return fnv1a(source + winogradInputShader(2, false) + winogradOutputShader(2, e) + winogradInputShader(4, false) + winogradOutputShader(4, e));
}
