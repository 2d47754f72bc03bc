// matmul (shaders/matmul.wgsl): C = A B with A [M][K], B [K][N] (or [N][K] transposed), plus an
// optional bias over N and ReLU. The benchmarks use the plain form as the adapter's ceiling;
// `Linear` is the transposed form with a torch Linear weight [out][in].

import source from '../../shaders/matmul.wgsl';
import type { GpuContext, KernelSpec } from '../gpu.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';
import { QUICK_MATMUL_TILE } from '../tiers.ts';

export interface MatmulTile {
  tm: number;
  tn: number;
  wgX: number;
  wgY: number;
}

export const DEFAULT_MATMUL_TILE: MatmulTile = { tm: 8, tn: 8, wgX: 4, wgY: 4 };

export interface MatmulSpec {
  transB?: boolean;
  bias?: boolean;
  relu?: boolean;
  tile?: MatmulTile;
}

/** Records C = A B (+ bias, ReLU) for `dims` and returns C [M][N] (pooled unless `c` is given). */
export function recordMatmul(
  rec: Recorder,
  spec: MatmulSpec,
  dims: { m: number; n: number; k: number },
  io: { a: Tensor; b: Tensor; bias?: Tensor; c?: Tensor },
  label = 'matmul',
): Tensor {
  const c = io.c ?? rec.tensor(label, [dims.m, dims.n]);
  rec.record(matmulDispatch(rec.ctx, spec, dims, { a: io.a.buffer, b: io.b.buffer, c: c.buffer, bias: io.bias?.buffer }, label));
  return c;
}

/** The kernel of a matmul with `tile` (what compiles: the epilogue, B's layout, the tile). */
export function matmulKernelSpec(spec: MatmulSpec, dims: { n: number }, tile: MatmulTile, label: string, dynamicN = false): KernelSpec {
  return {
    source,
    label,
    consts: {
      TM: tile.tm,
      TN: tile.tn,
      WG_X: tile.wgX,
      WG_Y: tile.wgY,
      TRANS_B: !!spec.transB,
      BIAS: !!spec.bias,
      RELU: tile !== QUICK_MATMUL_TILE && !!spec.relu,
      VEC_B: !spec.transB && dims.n % 4 === 0 && tile.tn % 4 === 0,
      DYNAMIC_RELU: tile === QUICK_MATMUL_TILE,
      DYNAMIC_N: dynamicN,
    },
  };
}

/**
 * One matmul dispatch; with `batch`, `count` products C_z = A_z B_z whose matrices start `a`,
 * `b` and `c` elements apart in their buffers (workgroup z picks the product). With
 * `liveColumns`, only the first limit[0] * perLimit - offset columns are computed (a GPU count).
 */
export function matmulDispatch(
  ctx: GpuContext,
  spec: MatmulSpec,
  dims: { m: number; n: number; k: number },
  buffers: { a: GPUBuffer; b: GPUBuffer; c: GPUBuffer; bias?: GPUBuffer },
  label: string,
  batch: { count: number; a: number; b: number; c: number } = { count: 1, a: 0, b: 0, c: 0 },
  liveColumns?: { limit: GPUBuffer; perLimit: number; offset: number },
): Dispatch {
  if (!!spec.bias !== !!buffers.bias) throw new Error(`${label}: bias buffer ${spec.bias ? 'missing' : 'given but unused'}`);
  if (buffers.b.size % 16) throw new Error(`${label}: B's buffer size (${buffers.b.size} bytes) must be a multiple of 16 (it is read as vec4s); allocate it with GpuContext.createBuffer`);
  const specFor = (tile: MatmulTile) => matmulKernelSpec(spec, dims, tile, label, !!liveColumns);
  // A tile given in the spec is used as is; the default may wait behind a quick stand-in (engine/tiers.ts).
  const { kernel, variant: tile } = spec.tile ? { kernel: ctx.kernel(specFor(spec.tile)), variant: spec.tile } : ctx.tieredKernel(DEFAULT_MATMUL_TILE, QUICK_MATMUL_TILE, specFor);
  return Dispatch.create(
    ctx,
    kernel,
    { ...dims, flags: spec.relu ? 1 : 0, batch_a: batch.a, batch_b: batch.b, batch_c: batch.c, n_per_limit: liveColumns?.perLimit ?? 0, n_offset: liveColumns?.offset ?? 0 },
    { a: buffers.a, b: buffers.b, c: buffers.c, bias: buffers.bias ?? ctx.unusedBinding, n_limit: liveColumns?.limit ?? ctx.unusedBinding },
    [ceilDiv(dims.n, tile.tn * tile.wgX), ceilDiv(dims.m, tile.tm * tile.wgY), batch.count],
    label,
  );
}
