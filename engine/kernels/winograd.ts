// Winograd convolution for 3x3, stride-1, dilation-1 layers: F(2x2, 3x3) and F(4x4, 3x3) (Lavin
// & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015). The output is cut into M x M
// tiles, each reading an A x A input tile (A = M + 2) at stride M. With the input transform
// V = B^T d B and the weights transformed once at load, U = G g G^T (float64, rounded once), a
// tile's outputs are Y = A^T [sum over ci of U[ci] (.) V[ci]] A: per input channel, A*A
// multiplications per output channel and tile instead of 9 M^2 (F(2,3): 16 vs 36, 2.25x fewer;
// F(4,3): 36 vs 144, 4x fewer). Three dispatches per chunk of tiles (Conv2d.recordWinograd):
//   input transform   (generated here) V [A*A][Cin][tiles], zero padding, batch limit
//   batched GEMM      matmul.wgsl, workgroup z = transform position: M[e] = U[e] V[e]
//   output transform  (generated here) Y = A^T M A + bias (+ residual) (ReLU), as conv2d.wgsl's epilogue
// The transforms are generated per size and epilogue as straight-line WGSL (one scalar per value).
// Rounding differs from the direct conv's: the bound is WINOGRAD_TOLERANCE in tests/tolerance.ts.
// Conv2d takes this path when its tile asks for it (ConvTile.winograd, per conv class and adapter:
// `npm run tune`) and the layer qualifies; the direct conv stays the reference path, the quick
// stand-in (engine/tiers.ts) and the fallback.

import type { KernelSpec } from '../gpu.ts';
import type { ConvTile } from './convTiling.ts';

/** Output tile size M of F(M x M, 3 x 3). */
export type WinogradSize = 2 | 4;

/**
 * G (A x 3) of F(M, 3), rows by transform position: U = G g G^T. F(2,3) interpolates at 0, 1,
 * -1 and infinity; F(4,3) at 0, +-1, +-2 and infinity (Lavin & Gray 2015). B^T and A^T live in
 * the WGSL (winograd_f2.wgsl, winograd_f4.wgsl) and in WINOGRAD_BT / WINOGRAD_AT for references.
 */
export const WINOGRAD_G: Record<WinogradSize, number[][]> = {
  2: [
    [1, 0, 0],
    [1 / 2, 1 / 2, 1 / 2],
    [1 / 2, -1 / 2, 1 / 2],
    [0, 0, 1],
  ],
  4: [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
  ],
};

/** B^T (A x A): V = B^T d B. */
export const WINOGRAD_BT: Record<WinogradSize, number[][]> = {
  2: [
    [1, 0, -1, 0],
    [0, 1, 1, 0],
    [0, -1, 1, 0],
    [0, 1, 0, -1],
  ],
  4: [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
  ],
};

/** A^T (M x A): Y = A^T X A. */
export const WINOGRAD_AT: Record<WinogradSize, number[][]> = {
  2: [
    [1, 1, 1, 0],
    [0, 1, -1, -1],
  ],
  4: [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
  ],
};

/** Whether a conv can run as Winograd F(M, 3): 3x3, stride 1, dilation 1, f32 weights. */
export function winogradEligible(c: { kernel: [number, number]; stride: [number, number]; dilation: [number, number]; precision: string }): boolean {
  return c.kernel[0] === 3 && c.kernel[1] === 3 && c.stride[0] === 1 && c.stride[1] === 1 && c.dilation[0] === 1 && c.dilation[1] === 1 && c.precision === 'f32';
}

/**
 * torch [Cout][Cin][3][3] -> U = G g G^T per (output, input channel), stored [A*A][Cout][Cin]: for
 * each transform position the A operand (rows = output channels) of the batched GEMM. Computed in
 * float64 and rounded once to float32.
 */
export function winogradWeights(w: Float32Array, cout: number, cin: number, m: WinogradSize): Float32Array {
  if (w.length !== cout * cin * 9) throw new Error(`conv weight has ${w.length} values, expected ${cout}x${cin}x3x3 = ${cout * cin * 9}`);
  const g = WINOGRAD_G[m];
  const a = m + 2;
  const out = new Float32Array(a * a * cout * cin);
  const gg = new Float64Array(a * 3); // G g for one (o, i): [A][3]
  for (let o = 0; o < cout; o++) {
    for (let i = 0; i < cin; i++) {
      const base = (o * cin + i) * 9;
      for (let r = 0; r < a; r++) {
        for (let c = 0; c < 3; c++) {
          let s = 0;
          for (let k = 0; k < 3; k++) s += g[r][k] * w[base + k * 3 + c];
          gg[r * 3 + c] = s;
        }
      }
      for (let r = 0; r < a; r++) {
        for (let c = 0; c < a; c++) {
          let s = 0;
          for (let k = 0; k < 3; k++) s += gg[r * 3 + k] * g[c][k];
          out[((r * a + c) * cout + o) * cin + i] = s;
        }
      }
    }
  }
  return out;
}

/**
 * Tiles per GEMM chunk: V ([A*A][Cin][chunk]) and M ([A*A][Cout][chunk]) each stay within
 * `budgetBytes` (and so within a storage binding); a multiple of 4 (vec4 rows of B).
 */
export function winogradChunk(m: WinogradSize, cin: number, cout: number, tiles: number, budgetBytes: number): number {
  const perTile = (m + 2) ** 2 * Math.max(cin, cout) * 4;
  const fit = Math.max(4, Math.floor(budgetBytes / perTile / 4) * 4);
  return Math.min(fit, Math.ceil(tiles / 4) * 4);
}

export interface WinogradEpilogue {
  RELU: boolean;
  RESIDUAL: boolean;
  RESIDUAL_HALF: boolean;
  DYNAMIC_BATCH: boolean;
}

/** Generated sources by size and epilogue: each is generated once per process. */
const generated = new Map<string, string>();
function memo(key: string, make: () => string): string {
  let source = generated.get(key);
  if (source === undefined) generated.set(key, (source = make()));
  return source;
}

/** The two transform kernels of a Winograd layer (the GEMM between them is matmul.wgsl's). */
export function winogradTransformSpecs(m: WinogradSize, epilogue: WinogradEpilogue, label: string): { input: KernelSpec; output: KernelSpec } {
  const e = `${+epilogue.RELU}${+epilogue.RESIDUAL}${+epilogue.RESIDUAL_HALF}${+epilogue.DYNAMIC_BATCH}`;
  return {
    input: { source: memo(`in ${m} ${+epilogue.DYNAMIC_BATCH}`, () => winogradInputShader(m, epilogue.DYNAMIC_BATCH)), label: `${label}.winograd-in` },
    output: { source: memo(`out ${m} ${e}`, () => winogradOutputShader(m, epilogue)), label: `${label}.winograd-out` },
  };
}

/** `sum_j coeffs[j] * term(j)` as WGSL, zero terms left out and +-1 as adds (the transforms). */
function combination(coeffs: number[], term: (j: number) => string): string {
  let out = '';
  coeffs.forEach((c, j) => {
    if (c === 0) return;
    const mag = Math.abs(c) === 1 ? term(j) : `${Math.abs(c).toFixed(1)} * ${term(j)}`;
    out += out ? ` ${c < 0 ? '-' : '+'} ${mag}` : `${c < 0 ? '-' : ''}${mag}`;
  });
  return out || '0.0';
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

const TRANSFORM_PARAMS = `struct Params {
  batch: u32,
  channels: u32, // input channels (input transform) or output channels (output transform)
  h: u32,        // input size (input transform) or output size (output transform)
  w: u32,
  pad_h: u32,
  pad_w: u32,
  tiles_y: u32,
  tiles_x: u32,
  p0: u32,       // first tile of this chunk (tiles counted over the batch, row-major)
  pc: u32,       // tiles in this chunk
  pc4: u32,      // the chunk's row length in V and M (pc rounded up to 4)
}`;

/** Where an invocation's tile lies, and whether it exists (and is live under a GPU batch limit). */
function tileIndex(m: number, dynamicBatch: boolean): string[] {
  return [
    '  let j = gid.x;',
    '  let ch = gid.y;',
    '  if (j >= params.pc || ch >= params.channels) {',
    '    return;',
    '  }',
    '  let p = params.p0 + j;',
    '  let per_image = params.tiles_y * params.tiles_x;',
    '  let b = p / per_image;',
    `  if (b >= ${dynamicBatch ? 'min(params.batch, batch_limit[0])' : 'params.batch'}) {`,
    '    return;',
    '  }',
    '  let ty = (p - b * per_image) / params.tiles_x;',
    '  let tx = p - b * per_image - ty * params.tiles_x;',
    `  let y0 = i32(ty * ${m}u) - i32(params.pad_h);`,
    `  let x0 = i32(tx * ${m}u) - i32(params.pad_w);`,
  ];
}

/**
 * The input transform of F(m, 3), generated: one invocation per (tile of the chunk, input
 * channel) loads the A x A input tile (zero outside the image) and writes V = B^T d B to
 * V[position][channel][tile]: the B operands of the batched GEMM.
 */
export function winogradInputShader(m: WinogradSize, dynamicBatch: boolean): string {
  const A = m + 2;
  const BT = WINOGRAD_BT[m];
  const L = [
    `// Generated by engine/kernels/winograd.ts: Winograd F(${m}x${m}, 3x3) input transform V = B^T d B.`,
    TRANSFORM_PARAMS,
    '@group(0) @binding(0) var<uniform> params: Params;',
    '@group(0) @binding(1) var<storage, read> input: array<f32>;',
    '@group(0) @binding(2) var<storage, read_write> v: array<f32>;',
    '@group(0) @binding(3) var<storage, read> batch_limit: array<u32>;',
    '',
    '@compute @workgroup_size(64, 4)',
    'fn main(@builtin(global_invocation_id) gid: vec3u) {',
    ...tileIndex(m, dynamicBatch),
    '  let plane = (b * params.channels + ch) * params.h * params.w;',
  ];
  for (const r of range(A)) {
    L.push(`  let rk${r} = select(0u, 0xffffffffu, y0 + ${r} >= 0 && y0 + ${r} < i32(params.h));`);
    L.push(`  let ro${r} = plane + u32(clamp(y0 + ${r}, 0, i32(params.h) - 1)) * params.w;`);
  }
  for (const c of range(A)) {
    L.push(`  let ck${c} = select(0u, 0xffffffffu, x0 + ${c} >= 0 && x0 + ${c} < i32(params.w));`);
    L.push(`  let co${c} = u32(clamp(x0 + ${c}, 0, i32(params.w) - 1));`);
  }
  for (const r of range(A)) for (const c of range(A)) L.push(`  let d${r}_${c} = bitcast<f32>(bitcast<u32>(input[ro${r} + co${c}]) & (rk${r} & ck${c}));`);
  // The columns first (s = B^T d), then the rows (V = s B).
  for (const r of range(A)) for (const c of range(A)) L.push(`  let s${r}_${c} = ${combination(BT[r], (k) => `d${k}_${c}`)};`);
  L.push('  let stride = params.channels * params.pc4;');
  L.push('  let out = ch * params.pc4 + j;');
  for (const r of range(A)) for (const c of range(A)) L.push(`  v[${r * A + c}u * stride + out] = ${combination(BT[c], (k) => `s${r}_${k}`)};`);
  L.push('}', '');
  return L.join('\n');
}

/**
 * The output transform of F(m, 3), generated: one invocation per (tile of the chunk, output
 * channel) reads the A x A products M[position][channel][tile] of the batched GEMM and writes
 * Y = A^T M A + bias (+ residual, full or half size) (then ReLU) where the tile is inside the output.
 */
export function winogradOutputShader(m: WinogradSize, e: WinogradEpilogue): string {
  const A = m + 2;
  const AT = WINOGRAD_AT[m];
  const L = [
    `// Generated by engine/kernels/winograd.ts: Winograd F(${m}x${m}, 3x3) output transform Y = A^T M A;`,
    `// epilogue: bias${e.RESIDUAL ? ', residual' : ''}${e.RESIDUAL_HALF ? ', half-size residual' : ''}${e.RELU ? ', ReLU' : ''}${e.DYNAMIC_BATCH ? ', GPU batch limit' : ''}.`,
    TRANSFORM_PARAMS,
    '@group(0) @binding(0) var<uniform> params: Params;',
    '@group(0) @binding(1) var<storage, read> mm: array<f32>;',
    '@group(0) @binding(2) var<storage, read> bias: array<f32>;',
    '@group(0) @binding(3) var<storage, read> residual: array<f32>;',
    '@group(0) @binding(4) var<storage, read_write> output: array<f32>;',
    '@group(0) @binding(5) var<storage, read> batch_limit: array<u32>;',
    '',
    '@compute @workgroup_size(64, 4)',
    'fn main(@builtin(global_invocation_id) gid: vec3u) {',
    ...tileIndex(m, e.DYNAMIC_BATCH),
    '  let stride = params.channels * params.pc4;',
    '  let at = ch * params.pc4 + j;',
  ];
  for (const k of range(A * A)) L.push(`  let m${k} = mm[${k}u * stride + at];`);
  for (const p of range(m)) for (const c of range(A)) L.push(`  let h${p}_${c} = ${combination(AT[p], (r) => `m${r * A + c}`)};`);
  L.push('  let bias_c = bias[ch];');
  L.push('  let oy = u32(y0 + i32(params.pad_h));');
  L.push('  let ox = u32(x0 + i32(params.pad_w));');
  for (const p of range(m)) {
    for (const q of range(m)) {
      L.push(`  if (oy + ${p}u < params.h && ox + ${q}u < params.w) {`);
      L.push(`    let y = oy + ${p}u;`);
      L.push(`    let x = ox + ${q}u;`);
      L.push('    let out_index = ((b * params.channels + ch) * params.h + y) * params.w + x;');
      L.push(`    var value = (${combination(AT[q], (c) => `h${p}_${c}`)}) + bias_c;`);
      if (e.RESIDUAL_HALF) L.push('    value += residual[((b * params.channels + ch) * (params.h / 2u) + y / 2u) * (params.w / 2u) + x / 2u];');
      else if (e.RESIDUAL) L.push('    value += residual[out_index];');
      if (e.RELU) L.push('    value = max(value, 0.0);');
      L.push('    output[out_index] = value;', '  }');
    }
  }
  L.push('}', '');
  return L.join('\n');
}

/** Output tiles per image along each axis. */
export function winogradTiles(oh: number, ow: number, m: WinogradSize): { tilesY: number; tilesX: number } {
  return { tilesY: Math.ceil(oh / m), tilesX: Math.ceil(ow / m) };
}
