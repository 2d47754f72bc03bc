// normalEquations (shaders/design_matrix.wgsl + shaders/normal_equations.wgsl): accumulates
// G += [X | 1]^T [X | 1 | T] on the GPU for a least-squares refit of a conv (or Linear, as a 1x1
// conv) layer: X is the im2col of the layer's input (the conv geometry is the spec's), T the
// targets at the layer's output positions, optionally minus a base (a residual branch's
// correction). G is F x (F + M) floats, F = Cin * KH * KW + 1 (the last feature is the
// intercept), M = target channels; the blocks below the diagonal of the X^T X part are not
// written (mirror the upper triangle). The positions are processed in chunks: each chunk's
// transposed design matrix R = [X | 1 | T]^T (design_matrix.wgsl) is one pooled buffer of at most
// `maxChunkFloats` floats, then normal_equations.wgsl adds R[:F] R^T into G (a register-blocked
// product, like matmul.wgsl). Compile-time: the register tile and whether a base is subtracted;
// run-time: sizes, the conv geometry and the chunk.

import designSource from '../../shaders/design_matrix.wgsl';
import source from '../../shaders/normal_equations.wgsl';
import { GpuError } from '../gpu.ts';
import { nchw, type Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { convOutputSize } from './conv2d.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

export interface NormalEquationsSpec {
  cin: number;
  kernel: [number, number];
  stride?: [number, number];
  padding?: [number, number];
  /** Target channels M. */
  targets: number;
  /** Register tile (rows x columns of G per invocation) and workgroup; tests vary it. */
  tile?: { tm: number; tn: number; wgX: number; wgY: number };
  /** Largest design-matrix chunk in floats (default: the storage binding limit); tests lower it. */
  maxChunkFloats?: number;
}

/**
 * Which output positions enter the sums: every `step`-th of the flattened (n, oy, ox) range,
 * starting at `offset` (< step). Default all: { step: 1, offset: 0 }.
 */
export interface PositionSample {
  step: number;
  offset: number;
}

/** Positions one design_matrix invocation writes. */
const DESIGN_SEGMENT = 32;

export const DEFAULT_NORMAL_EQUATIONS_TILE = { tm: 4, tn: 8, wgX: 8, wgY: 4 };

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
  sample: PositionSample = { step: 1, offset: 0 },
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
  const limit = ctx.device.limits.maxStorageBufferBindingSize;
  if (features * columns * 4 > limit) {
    throw new GpuError(
      `${label}: the normal equations of ${features - 1} inputs and ${spec.targets} outputs need ${Math.round((features * columns * 4) / 2 ** 20)} MiB, over this adapter's ${Math.round(limit / 2 ** 20)} MiB storage binding limit`,
    );
  }
  if (io.gram.buffer.size < features * columns * 4) throw new Error(`${label}: gram '${io.gram.label}' holds ${io.gram.buffer.size} bytes, needs ${features * columns * 4}`);
  if (!Number.isSafeInteger(sample.step) || sample.step < 1 || !Number.isSafeInteger(sample.offset) || sample.offset < 0 || sample.offset >= sample.step) {
    throw new Error(`${label}: position sample step ${sample.step}, offset ${sample.offset}: need integers with 0 <= offset < step`);
  }
  // Sampled positions offset, offset + step, ...: `positions` of them.
  const positions = Math.max(0, Math.ceil((x.batch * oh * ow - sample.offset) / sample.step));
  const maxFloats = Math.min(spec.maxChunkFloats ?? Infinity, Math.floor(limit / 4));
  const chunk = Math.floor(maxFloats / columns / 4) * 4;
  if (chunk < 4) throw new GpuError(`${label}: one design-matrix chunk of 4 positions x ${columns} columns exceeds ${maxFloats} floats`);
  const tile = spec.tile ?? DEFAULT_NORMAL_EQUATIONS_TILE;
  const designKernel = ctx.kernel({ source: designSource, label: `${label} design`, consts: { BASE: !!io.base, SEG: DESIGN_SEGMENT } });
  const gramKernel = ctx.kernel({ source, label, consts: { TM: tile.tm, TN: tile.tn, WG_X: tile.wgX, WG_Y: tile.wgY } });
  for (let first = 0; first < positions; first += chunk) {
    const count = Math.min(chunk, positions - first);
    const p0 = sample.offset + first * sample.step;
    const pitch = Math.ceil(count / 4) * 4;
    const design = rec.tensor(`${label} design`, [columns, pitch]);
    const { grid, rowPitch } = elementGrid(ctx, columns * ceilDiv(pitch, DESIGN_SEGMENT), designKernel.workgroup[0]);
    rec.record(
      Dispatch.create(
        ctx,
        designKernel,
        { cin: x.c, h: x.h, w: x.w, oh, ow, kh, kw, stride_h: sh, stride_w: sw, pad_h: ph, pad_w: pw, rows: columns, targets: spec.targets, p0, step: sample.step, count, pitch, row_pitch: rowPitch },
        { input: io.input.buffer, target_values: io.target.buffer, base_values: io.base?.buffer ?? ctx.unusedBinding, design: design.buffer },
        grid,
      ),
      Dispatch.create(ctx, gramKernel, { features, columns, pitch4: pitch / 4 }, { design: design.buffer, gram: io.gram.buffer }, [
        ceilDiv(columns, tile.tn * tile.wgX),
        ceilDiv(features, tile.tm * tile.wgY),
      ]),
    );
    rec.release(design);
  }
}
