// Register-blocked matmul C[M][N] = A[M][K] * B (+ bias[n], optional ReLU), row-major, fp32.
// B is [K][N], or [N][K] when TRANS_B (a torch Linear weight: C = X W^T + b, so `linear` is this
// kernel). Each invocation keeps TM x TN accumulators in registers and uses no workgroup memory:
// on CPU adapters (lavapipe) that beats shared-memory tiling; tiles are specialised per adapter.

const TM: u32 = 4u;
const TN: u32 = 8u;
const WG_X: u32 = 4u;   // invocations along N
const WG_Y: u32 = 4u;   // invocations along M
const TRANS_B: bool = false;
const BIAS: bool = false;
const RELU: bool = false;

struct Params {
  m: u32,
  n: u32,
  k: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let m_total = params.m;
  let n_total = params.n;
  let k_total = params.k;
  let n0 = gid.x * TN;
  let m0 = gid.y * TM;
  if (n0 >= n_total || m0 >= m_total) {
    return;
  }
  // Rows/columns past the edge are clamped (computed, not stored) so the k loop has no tests.
  var a_row: array<u32, TM>;
  for (var i = 0u; i < TM; i++) {
    a_row[i] = min(m0 + i, m_total - 1u) * k_total;
  }
  var b_col: array<u32, TN>;
  for (var j = 0u; j < TN; j++) {
    let n = min(n0 + j, n_total - 1u);
    b_col[j] = select(n, n * k_total, TRANS_B);
  }

  var acc = array<array<f32, TN>, TM>();
  for (var kk = 0u; kk < k_total; kk++) {
    var bv: array<f32, TN>;
    let b_k = select(kk * n_total, kk, TRANS_B);
    for (var j = 0u; j < TN; j++) {
      bv[j] = b[b_col[j] + b_k];
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
      if (RELU) {
        v = max(v, 0.0);
      }
      c[m * n_total + n] = v;
    }
  }
}
