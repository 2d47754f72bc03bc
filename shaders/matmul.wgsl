// Register-blocked matmul C[M][N] = A[M][K] * B (+ bias[n], optional ReLU), row-major, fp32.
// B is [K][N], or [N][K] when TRANS_B (a torch Linear weight: C = X W^T + b, so `linear` is this
// kernel). Each invocation keeps TM x TN accumulators in registers and uses no workgroup memory:
// on CPU adapters (lavapipe) that beats shared-memory tiling; tiles are specialised per adapter.
// The same loads as conv2d.wgsl, so the benchmark's ceiling is a fair one: with WG_Y == 1 the A
// rows of a workgroup are uniform, and with VEC_B (B [K][N], N and TN multiples of 4) an
// invocation's TN columns of B come as TN / 4 vec4 loads.

const TM: u32 = 4u;
const TN: u32 = 8u;
const WG_X: u32 = 4u;   // invocations along N
const WG_Y: u32 = 4u;   // invocations along M
const TRANS_B: bool = false;
const BIAS: bool = false;
const RELU: bool = false;
const VEC_B: bool = false;
// The quick tier (engine/tiers.ts): ReLU from params.flags bit 0 instead of RELU, so one compiled
// variant serves the layers with and without it.
const DYNAMIC_RELU: bool = false;
// Only the first n_limit[0] * n_per_limit - n_offset columns are live (a count on the GPU: the
// Winograd GEMM of the mask head skips the tiles of RoIs past the kept detections); invocations
// wholly past them return. Strides stay those of n.
const DYNAMIC_N: bool = false;

struct Params {
  m: u32,
  n: u32,
  k: u32,
  flags: u32, // DYNAMIC_RELU only
  // Batched GEMM (workgroup z = batch entry): element offsets between consecutive A, B and C
  // matrices (0 for a single product). Winograd convs run their transform positions so.
  batch_a: u32,
  batch_b: u32,
  batch_c: u32,
  n_per_limit: u32, // DYNAMIC_N only
  n_offset: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>; // read per component unless VEC_B
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read> n_limit: array<u32>; // DYNAMIC_N only

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let m_total = params.m;
  let n_total = params.n;
  let k_total = params.k;
  // A 1-wide workgroup dimension folds the local id to 0: the row block is visibly uniform.
  let n0 = (wid.x * WG_X + select(lid.x, 0u, WG_X == 1u)) * TN;
  let m0 = (wid.y * WG_Y + select(lid.y, 0u, WG_Y == 1u)) * TM;
  if (n0 >= n_total || m0 >= m_total) {
    return;
  }
  if (DYNAMIC_N) {
    let live = n_limit[0] * params.n_per_limit;
    if (live <= params.n_offset || n0 >= live - params.n_offset) {
      return;
    }
  }
  let a0 = wid.z * params.batch_a;
  let b0 = wid.z * params.batch_b;
  let c0 = wid.z * params.batch_c;
  // Rows/columns past the edge are clamped (computed, not stored) so the k loop has no tests.
  var a_row: array<u32, TM>;
  for (var i = 0u; i < TM; i++) {
    a_row[i] = a0 + min(m0 + i, m_total - 1u) * k_total;
  }
  var b_col: array<u32, TN>;
  for (var j = 0u; j < TN; j++) {
    let n = min(n0 + j, n_total - 1u);
    b_col[j] = b0 + select(n, n * k_total, TRANS_B);
  }

  var acc = array<array<f32, TN>, TM>();
  for (var kk = 0u; kk < k_total; kk++) {
    var bv: array<f32, TN>;
    let b_k = select(kk * n_total, kk, TRANS_B);
    if (VEC_B) {
      for (var g = 0u; g < TN / 4u; g++) {
        let v = b[(b_col[g * 4u] + b_k) / 4u];
        bv[g * 4u] = v.x;
        bv[g * 4u + 1u] = v.y;
        bv[g * 4u + 2u] = v.z;
        bv[g * 4u + 3u] = v.w;
      }
    } else {
      for (var j = 0u; j < TN; j++) {
        let e = b_col[j] + b_k;
        bv[j] = b[e / 4u][e % 4u];
      }
    }
    for (var i = 0u; i < TM; i++) {
      let av = a[a_row[i] + kk];
      for (var j = 0u; j < TN; j++) {
        acc[i][j] = fma(av, bv[j], acc[i][j]);
      }
    }
  }

  for (var i = 0u; i < TM; i++) {
    let m = m0 + i;
    if (m >= m_total) {
      break;
    }
    for (var j = 0u; j < TN; j++) {
      let n = n0 + j;
      if (n >= n_total) {
        break;
      }
      var v = acc[i][j];
      if (BIAS) {
        v += bias[n];
      }
      if (select(RELU, (params.flags & 1u) != 0u, DYNAMIC_RELU)) {
        v = max(v, 0.0);
      }
      c[c0 + m * n_total + n] = v;
    }
  }
}
