// normalEquations (shaders/normal_equations.wgsl): accumulates G += [X | 1]^T [X | 1 | T] on the
// GPU for a least-squares refit of a conv (or Linear, as a 1x1 conv) layer: X is the im2col of
// the layer's input (the conv geometry is the spec's), T the targets at the layer's output
// positions, optionally minus a base (a residual branch's correction). G is F x (F + M) floats,
// F = Cin * KH * KW + 1 (the last feature is the intercept), M = target channels; the blocks below
// the diagonal of the X^T X part are not written (mirror the upper triangle). Compile-time: the
// register tile and whether a base is subtracted; run-time: sizes and the conv geometry.

import source from '../../shaders/normal_equations.wgsl';
import { GpuError } from '../gpu.ts';
import { nchw, type Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { convOutputSize } from './conv2d.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';

export interface NormalEquationsSpec {
  cin: number;
  kernel: [number, number];
  stride?: [number, number];
  padding?: [number, number];
  /** Target channels M. */
  targets: number;
  /** Register tile (rows x columns of G per invocation) and workgroup; tests vary it. */
  tile?: { tm: number; tn: number; wgX: number; wgY: number };
}

export const DEFAULT_NORMAL_EQUATIONS_TILE = { tm: 4, tn: 4, wgX: 8, wgY: 8 };

/** F = Cin * KH * KW + 1 features (the intercept last) and the F + M columns of G. */
export function normalEquationsSize(spec: NormalEquationsSpec): { features: number; columns: number } {
  const features = spec.cin * spec.kernel[0] * spec.kernel[1] + 1;
  return { features, columns: features + spec.targets };
}

/**
 * Records G += [X | 1]^T [X | 1 | target - base] for `input` ([Cin, H, W] or [N, Cin, H, W]) and
 * `target` (the spec's conv output shape, M channels) into `gram` (F x (F + M) floats, zeroed by
 * the caller before the first image).
 */
export function recordNormalEquations(
  rec: Recorder,
  spec: NormalEquationsSpec,
  io: { input: Tensor; target: Tensor; base?: Tensor; gram: Tensor },
  label = 'normal_equations',
): void {
  const ctx = rec.ctx;
  const [kh, kw] = spec.kernel;
  const [sh, sw] = spec.stride ?? [1, 1];
  const [ph, pw] = spec.padding ?? [0, 0];
  const x = nchw(io.input);
  if (x.c !== spec.cin) throw new Error(`${label}: input '${io.input.label}' has ${x.c} channels, expected ${spec.cin}`);
  const oh = convOutputSize(x.h, kh, sh, ph, 1);
  const ow = convOutputSize(x.w, kw, sw, pw, 1);
  const t = nchw(io.target);
  if (t.batch !== x.batch || t.c !== spec.targets || t.h !== oh || t.w !== ow) {
    throw new Error(`${label}: target '${io.target.label}' is [${io.target.shape.join(', ')}], expected ${x.batch} x ${spec.targets} x ${oh} x ${ow}`);
  }
  if (io.base && io.base.shape.join() !== io.target.shape.join()) throw new Error(`${label}: base '${io.base.label}' must have the target's shape`);
  const { features, columns } = normalEquationsSize(spec);
  const bytes = features * columns * 4;
  if (bytes > ctx.device.limits.maxStorageBufferBindingSize) {
    throw new GpuError(
      `${label}: the normal equations of ${features - 1} inputs and ${spec.targets} outputs need ${Math.round(bytes / 2 ** 20)} MiB, over this adapter's ${Math.round(ctx.device.limits.maxStorageBufferBindingSize / 2 ** 20)} MiB storage binding limit`,
    );
  }
  if (io.gram.buffer.size < bytes) throw new Error(`${label}: gram '${io.gram.label}' holds ${io.gram.buffer.size} bytes, needs ${bytes}`);
  const tile = spec.tile ?? DEFAULT_NORMAL_EQUATIONS_TILE;
  const kernel = ctx.kernel({ source, label, consts: { TM: tile.tm, TN: tile.tn, WG_X: tile.wgX, WG_Y: tile.wgY, BASE: !!io.base } });
  rec.record(
    Dispatch.create(
      ctx,
      kernel,
      { batch: x.batch, cin: x.c, h: x.h, w: x.w, oh, ow, kh, kw, stride_h: sh, stride_w: sw, pad_h: ph, pad_w: pw, features, targets: spec.targets },
      { input: io.input.buffer, target_values: io.target.buffer, base_values: io.base?.buffer ?? ctx.unusedBinding, gram: io.gram.buffer },
      [ceilDiv(columns, tile.tn * tile.wgX), ceilDiv(features, tile.tm * tile.wgY)],
    ),
  );
}
