// conv2d as an implicit GEMM (no im2col buffer), NCHW activations, fused epilogue.
// Semantics: torch.nn.functional.conv2d (groups = 1, zero padding) + bias, then optionally
// + residual, then optionally ReLU; with SHUFFLE > 1 the GEMM rows are (o, ky, kx) and the result
// is scattered depth-to-space, which is exactly ConvTranspose2d with kernel == stride.
//
// GEMM view: M = Cout (rows), N = batch * OH * OW (columns), K = KH * KW * Cin.
// Weights are reordered once at load to [Cout][KH][KW][Cin] so that, for a fixed tap (ky, kx),
// the inner loop over input channels is a plain dot-product walk: each invocation keeps TM x TN
// accumulators in registers; per input channel it loads TN input values (zero outside the
// padded border, decided once per tap) and TM weights.

const TM: u32 = 4u;        // output channels per invocation
const TN: u32 = 8u;        // output pixels per invocation
const WG_X: u32 = 4u;      // invocations along N
const WG_Y: u32 = 4u;      // invocations along M
const KH: u32 = 3u;        // kernel size is compile-time: the tap loops unroll
const KW: u32 = 3u;
const PADDED: bool = true; // false when no tap can fall outside the input (pad 0): no border tests
const RELU: bool = false;
const RESIDUAL: bool = false;
const SHUFFLE: u32 = 1u;   // > 1: ConvTranspose2d(kernel = stride = SHUFFLE) output layout
const DYNAMIC_BATCH: bool = false; // batch = min(params.batch, batch_limit[0]): RoI batches sized on the GPU

struct Params {
  batch: u32,
  cin: u32,
  h: u32,
  w: u32,
  cout: u32,   // GEMM rows (Cout * SHUFFLE^2 for the transposed conv)
  oh: u32,     // GEMM output size (before depth-to-space)
  ow: u32,
  stride_h: u32,
  stride_w: u32,
  pad_h: u32,
  pad_w: u32,
  dil_h: u32,
  dil_w: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;   // [cout][KH][KW][cin]
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [cout / SHUFFLE^2]
@group(0) @binding(4) var<storage, read> residual: array<f32>; // same shape as output (RESIDUAL)
@group(0) @binding(5) var<storage, read_write> output: array<f32>;
@group(0) @binding(6) var<storage, read> batch_limit: array<u32>;  // (DYNAMIC_BATCH) live batch entries

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let ohw = params.oh * params.ow;
  var batch = params.batch;
  if (DYNAMIC_BATCH) {
    // Detections past the kept count are padding: their workgroups return at once.
    batch = min(batch, batch_limit[0]);
  }
  let n_total = batch * ohw;
  let m_total = params.cout;
  let n0 = gid.x * TN;
  let m0 = gid.y * TM;
  if (n0 >= n_total || m0 >= m_total) {
    return;
  }
  let hw = params.h * params.w;
  let cin = params.cin;
  let k_total = KH * KW * cin;

  // Per output pixel: where its receptive field starts. Columns past the end are clamped to the
  // last one (computed, never stored) so the inner loop needs no N test.
  var in_base: array<u32, TN>;
  var iy0: array<i32, TN>;
  var ix0: array<i32, TN>;
  for (var j = 0u; j < TN; j++) {
    let n = min(n0 + j, n_total - 1u);
    let b = n / ohw;
    let r = n - b * ohw;
    let oy = r / params.ow;
    let ox = r - oy * params.ow;
    in_base[j] = b * cin * hw;
    iy0[j] = i32(oy * params.stride_h) - i32(params.pad_h);
    ix0[j] = i32(ox * params.stride_w) - i32(params.pad_w);
  }
  var w_row: array<u32, TM>;
  for (var i = 0u; i < TM; i++) {
    w_row[i] = min(m0 + i, m_total - 1u) * k_total;
  }

  var acc = array<array<f32, TN>, TM>();
  for (var ky = 0u; ky < KH; ky++) {
    for (var kx = 0u; kx < KW; kx++) {
      // Decide each pixel's tap once: its offset into channel 0, and whether it is inside.
      var offset: array<u32, TN>;
      var inside: array<bool, TN>;
      for (var j = 0u; j < TN; j++) {
        let iy = iy0[j] + i32(ky * params.dil_h);
        let ix = ix0[j] + i32(kx * params.dil_w);
        if (PADDED) {
          inside[j] = iy >= 0 && iy < i32(params.h) && ix >= 0 && ix < i32(params.w);
          offset[j] = in_base[j] + u32(clamp(iy, 0, i32(params.h) - 1)) * params.w + u32(clamp(ix, 0, i32(params.w) - 1));
        } else {
          inside[j] = true;
          offset[j] = in_base[j] + u32(iy) * params.w + u32(ix);
        }
      }
      let k_tap = (ky * KW + kx) * cin;
      for (var ci = 0u; ci < cin; ci++) {
        var x: array<f32, TN>;
        let channel = ci * hw;
        for (var j = 0u; j < TN; j++) {
          let v = input[offset[j] + channel];
          x[j] = select(0.0, v, inside[j]);
        }
        for (var i = 0u; i < TM; i++) {
          let wv = weight[w_row[i] + k_tap + ci];
          for (var j = 0u; j < TN; j++) {
            acc[i][j] = fma(wv, x[j], acc[i][j]);
          }
        }
      }
    }
  }

  let out_channels = m_total / (SHUFFLE * SHUFFLE);
  for (var j = 0u; j < TN; j++) {
    let n = n0 + j;
    if (n >= n_total) {
      break;
    }
    let b = n / ohw;
    let r = n - b * ohw;
    for (var i = 0u; i < TM; i++) {
      let m = m0 + i;
      if (m >= m_total) {
        break;
      }
      var out_index: u32;
      var o: u32;
      if (SHUFFLE == 1u) {
        o = m;
        out_index = (b * m_total + m) * ohw + r;
      } else {
        // Row m = (o, ky, kx): pixel (y, x) of the input lands on (y * S + ky, x * S + kx).
        o = m / (SHUFFLE * SHUFFLE);
        let tap = m - o * SHUFFLE * SHUFFLE;
        let y = r / params.ow;
        let x = r - y * params.ow;
        let oy = y * SHUFFLE + tap / SHUFFLE;
        let ox = x * SHUFFLE + tap % SHUFFLE;
        let out_w = params.ow * SHUFFLE;
        out_index = ((b * out_channels + o) * params.oh * SHUFFLE + oy) * out_w + ox;
      }
      var v = acc[i][j] + bias[o];
      if (RESIDUAL) {
        v += residual[out_index];
      }
      if (RELU) {
        v = max(v, 0.0);
      }
      output[out_index] = v;
    }
  }
}
