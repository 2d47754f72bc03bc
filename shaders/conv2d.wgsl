// conv2d as an implicit GEMM (no im2col buffer), NCHW activations, fused epilogue.
// Semantics: torch.nn.functional.conv2d (groups = 1, zero padding) + bias, then optionally
// + residual, then optionally ReLU; with SHUFFLE > 1 the GEMM rows are (o, ky, kx) and the result
// is scattered depth-to-space, which is exactly ConvTranspose2d with kernel == stride.
//
// GEMM view: M = Cout (rows), N = batch * OH * OW (columns), K = KH * KW * Cin.
// Weights are packed once at load to [KH][KW][Cin][M4] (M rounded up to a multiple of 4, zero
// filled) so that one vec4 load brings 4 output channels' weights for one K step, whatever Cin and
// Cout are (pruned layers have counts like 37 and 13): the rounding is the tail. Each invocation
// keeps TM x TN accumulators in registers; per K step it loads TN input values (zero outside the
// padded border, decided once per tap) and TM / 4 weight vectors.
//
// Workgroups with WG_Y == 1 give every invocation of a workgroup the same rows, so the weight and
// bias addresses are uniform: CPU adapters (lavapipe) then load them once and broadcast instead of
// one load per invocation; GPUs serve them from one cache line. The tile is tuned per adapter.

const TM: u32 = 8u;        // output channels per invocation: 1, 2 or a multiple of 4
const TN: u32 = 8u;        // output pixels per invocation
const WG_X: u32 = 8u;      // invocations along N
const WG_Y: u32 = 1u;      // invocations along M
const KH: u32 = 3u;        // kernel size is compile-time: the tap loops unroll
const KW: u32 = 3u;
const PADDED: bool = true; // false when no tap can fall outside the input (pad 0): no border tests
const RELU: bool = false;
const RESIDUAL: bool = false;
// The residual is at half the output size and added nearest-upsampled x2 (torch's interpolate with
// scale 0.5 picks floor(y / 2)): the FPN top-down merge fused into the lateral 1x1 conv.
const RESIDUAL_HALF: bool = false;
const SHUFFLE: u32 = 1u;   // > 1: ConvTranspose2d(kernel = stride = SHUFFLE) output layout
const DYNAMIC_BATCH: bool = false; // batch = min(params.batch, batch_limit[0]): RoI batches sized on the GPU
// 1x1, stride 1, no padding, OH*OW a multiple of 4 and TN a multiple of 4: the TN pixels of an
// invocation are consecutive in memory, read as TN / 4 vec4 loads.
const VEC_N: bool = false;
// The quick tier (engine/tiers.ts): the epilogue flags above come from params.flags instead (bit 0
// ReLU, 1 residual, 2 half-size residual, 3 GPU batch limit), so one compiled variant serves every
// layer of a kernel size. Off (the tuned kernels), has_flag() folds to the constant.
const DYNAMIC_EPILOGUE: bool = false;
// The quick tier also reads the kernel size and the pixel shuffle from params (kh, kw, shuffle)
// and tests the border on every tap: one compiled variant serves every conv and transposed conv
// of a plan (the tap loops no longer unroll; same products summed in the same order).
const DYNAMIC_TAPS: bool = false;

// The weights' storage type; conv2d.ts rewrites it to vec4<f16> (and enables f16) for f16 weights.
alias WeightVec = vec4<f32>;

const TM4: u32 = (TM + 3u) / 4u; // weight vectors per K step

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
  flags: u32,  // DYNAMIC_EPILOGUE only
  kh: u32,     // DYNAMIC_TAPS only (else KH, KW, SHUFFLE)
  kw: u32,
  shuffle: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Read as vec4: VEC_N takes whole vectors, other convs one component (buffers are 16-byte multiples).
@group(0) @binding(1) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight: array<WeightVec>; // [KH][KW][cin][M4 / 4]
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [cout / SHUFFLE^2]
@group(0) @binding(4) var<storage, read> residual: array<f32>; // output shape (RESIDUAL) or half (RESIDUAL_HALF)
@group(0) @binding(5) var<storage, read_write> output: array<f32>;
@group(0) @binding(6) var<storage, read> batch_limit: array<u32>;  // (DYNAMIC_BATCH) live batch entries

fn has_flag(bit: u32, fixed: bool) -> bool {
  if (DYNAMIC_EPILOGUE) {
    return (params.flags & bit) != 0u;
  }
  return fixed;
}

// One input channel at this invocation's TN pixels (`channel` = channel index * H * W).
fn load_pixels(offset: array<u32, TN>, keep: array<u32, TN>, channel: u32) -> array<f32, TN> {
  var x: array<f32, TN>;
  if (VEC_N) {
    for (var g = 0u; g < TN / 4u; g++) {
      let v = input[(offset[g * 4u] + channel) / 4u];
      x[g * 4u] = v.x;
      x[g * 4u + 1u] = v.y;
      x[g * 4u + 2u] = v.z;
      x[g * 4u + 3u] = v.w;
    }
  } else {
    for (var j = 0u; j < TN; j++) {
      let i = offset[j] + channel;
      x[j] = bitcast<f32>(bitcast<u32>(input[i / 4u][i % 4u]) & keep[j]);
    }
  }
  return x;
}

// The TM weights of one K step (`row` = K index * M4 / 4): TM / 4 vectors, or for TM < 4 the
// components lane0.. of the one vector that holds them.
fn load_weights(w_col: array<u32, TM4>, lane0: u32, row: u32) -> array<f32, TM> {
  var w: array<f32, TM>;
  for (var q = 0u; q < TM4; q++) {
    let v = vec4<f32>(weight[row + w_col[q]]);
    for (var c = 0u; c < min(TM, 4u); c++) {
      if (TM >= 4u) {
        w[q * 4u + c] = v[c];
      } else {
        w[c] = v[lane0 + c];
      }
    }
  }
  return w;
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  // With a 1-wide workgroup dimension the local id is folded to 0, so the compiler sees that the
  // row block depends on the workgroup alone.
  let col_block = wid.x * WG_X + select(lid.x, 0u, WG_X == 1u);
  let row_block = wid.y * WG_Y + select(lid.y, 0u, WG_Y == 1u);
  let ohw = params.oh * params.ow;
  var batch = params.batch;
  if (has_flag(8u, DYNAMIC_BATCH)) {
    // Detections past the kept count are padding: their workgroups return at once.
    batch = min(batch, batch_limit[0]);
  }
  let n_total = batch * ohw;
  let m_total = params.cout;
  let n0 = col_block * TN;
  let m0 = row_block * TM;
  if (n0 >= n_total || m0 >= m_total) {
    return;
  }
  let hw = params.h * params.w;
  let cin = params.cin;
  let m4_total = (m_total + 3u) / 4u;

  // Each output pixel's (batch, y, x), stepped from the first pixel instead of divided per pixel.
  // Columns past the end repeat the last one (computed, never stored): the K loop has no N test.
  var pix_b: array<u32, TN>;
  var pix_y: array<u32, TN>;
  var pix_x: array<u32, TN>;
  var b = n0 / ohw;
  var oy = (n0 - b * ohw) / params.ow;
  var ox = n0 - b * ohw - oy * params.ow;
  for (var j = 0u; j < TN; j++) {
    pix_b[j] = b;
    pix_y[j] = oy;
    pix_x[j] = ox;
    if (n0 + j + 1u < n_total) {
      ox += 1u;
      if (ox == params.ow) {
        ox = 0u;
        oy += 1u;
        if (oy == params.oh) {
          oy = 0u;
          b += 1u;
        }
      }
    }
  }
  // The vec4 columns of this invocation's rows (TM < 4: the one vector that holds them).
  var w_col: array<u32, TM4>;
  for (var q = 0u; q < TM4; q++) {
    w_col[q] = min(m0 / 4u + q, m4_total - 1u);
  }
  let lane0 = m0 % 4u; // TM < 4: first row's component in its vector
  let kh = select(KH, params.kh, DYNAMIC_TAPS);
  let kw = select(KW, params.kw, DYNAMIC_TAPS);
  let shuffle = select(SHUFFLE, params.shuffle, DYNAMIC_TAPS);

  var acc = array<array<f32, TN>, TM>();
  for (var ky = 0u; ky < kh; ky++) {
    for (var kx = 0u; kx < kw; kx++) {
      // Decide each pixel's tap once: its offset into channel 0, and a mask that zeroes it
      // outside the input (a bitwise AND is cheaper than a compare per load, and NaN-safe).
      var offset: array<u32, TN>;
      var keep: array<u32, TN>;
      for (var j = 0u; j < TN; j++) {
        let iy = i32(pix_y[j] * params.stride_h + ky * params.dil_h) - i32(params.pad_h);
        let ix = i32(pix_x[j] * params.stride_w + kx * params.dil_w) - i32(params.pad_w);
        let base = pix_b[j] * cin * hw;
        if (PADDED || DYNAMIC_TAPS) {
          let inside = iy >= 0 && iy < i32(params.h) && ix >= 0 && ix < i32(params.w);
          keep[j] = select(0u, 0xffffffffu, inside);
          offset[j] = base + u32(clamp(iy, 0, i32(params.h) - 1)) * params.w + u32(clamp(ix, 0, i32(params.w) - 1));
        } else {
          keep[j] = 0xffffffffu;
          offset[j] = base + u32(iy) * params.w + u32(ix);
        }
      }
      let k_tap = (ky * kw + kx) * cin;
      for (var ci = 0u; ci < cin; ci++) {
        let x = load_pixels(offset, keep, ci * hw);
        let w = load_weights(w_col, lane0, (k_tap + ci) * m4_total);
        for (var i = 0u; i < TM; i++) {
          for (var j = 0u; j < TN; j++) {
            acc[i][j] = fma(w[i], x[j], acc[i][j]);
          }
        }
      }
    }
  }

  let out_channels = m_total / (shuffle * shuffle);
  for (var j = 0u; j < TN; j++) {
    if (n0 + j >= n_total) {
      break;
    }
    let bj = pix_b[j];
    let y = pix_y[j];
    let x = pix_x[j];
    for (var i = 0u; i < TM; i++) {
      let m = m0 + i;
      if (m >= m_total) {
        break;
      }
      var out_index: u32;
      var o: u32;
      if (shuffle == 1u) {
        o = m;
        out_index = ((bj * m_total + m) * params.oh + y) * params.ow + x;
      } else {
        // Row m = (o, ky, kx): pixel (y, x) of the input lands on (y * S + ky, x * S + kx).
        o = m / (shuffle * shuffle);
        let tap = m - o * shuffle * shuffle;
        let sy = y * shuffle + tap / shuffle;
        let sx = x * shuffle + tap % shuffle;
        let out_w = params.ow * shuffle;
        out_index = ((bj * out_channels + o) * params.oh * shuffle + sy) * out_w + sx;
      }
      var v = acc[i][j] + bias[o];
      if (has_flag(4u, RESIDUAL_HALF)) {
        let half_w = params.ow / 2u;
        v += residual[((bj * m_total + m) * (params.oh / 2u) + y / 2u) * half_w + x / 2u];
      } else if (has_flag(2u, RESIDUAL)) {
        v += residual[out_index];
      }
      if (has_flag(1u, RELU)) {
        v = max(v, 0.0);
      }
      output[out_index] = v;
    }
  }
}
