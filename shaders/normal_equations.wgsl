// Normal equations of a least-squares layer fit, accumulated over positions:
//   G[i][j] += sum_p a(p, i) * b(p, j),   G: F x (F + M), row-major,
// with a(p, .) the F = K + 1 features of output position p of a convolution (its im2col row:
// K = Cin * KH * KW input values in torch's (c, ky, kx) weight order, zero where the window
// crosses the zero padding, then a constant 1 for the intercept) and b(p, .) = (a(p, .), t(p, .)),
// t(p, m) = target[n][m][oy][ox] - base[n][m][oy][ox] (base optional). So G = [X^T X | X^T T]
// with X the positions x features matrix, T the positions x M targets (He et al. 2017: a pruned
// layer's weights refit so that its output on the pruned network's input matches the unpruned
// network's output; a residual branch's target is corrected by the shortcut's difference, which is
// what `base` subtracts). Positions run over batch, OH and OW; a Linear layer is the 1x1 case.
//
// Register-blocked like matmul.wgsl: an invocation owns a TM x TN block of G and loops over the
// positions, keeping its TM rows' (c, ky, kx) decoded once; blocks entirely below the diagonal of
// the symmetric X^T X part are skipped (the CPU mirrors the upper triangle). Each dispatch adds its
// sums to G (float32), so G accumulates over images.

const TM: u32 = 4u;
const TN: u32 = 4u;
const WG_X: u32 = 8u;   // invocations along j
const WG_Y: u32 = 8u;   // invocations along i
const BASE: bool = false;

struct Params {
  batch: u32,
  cin: u32,
  h: u32,
  w: u32,
  oh: u32,
  ow: u32,
  kh: u32,
  kw: u32,
  stride_h: u32,
  stride_w: u32,
  pad_h: u32,
  pad_w: u32,
  features: u32,  // F = cin * kh * kw + 1
  targets: u32,   // M
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;   // [N][Cin][H][W]
@group(0) @binding(2) var<storage, read> target_values: array<f32>;  // [N][M][OH][OW]
@group(0) @binding(3) var<storage, read> base_values: array<f32>;    // like target_values, when BASE
@group(0) @binding(4) var<storage, read_write> gram: array<f32>;

// The column of feature f (f < K): input channel, kernel row, kernel column.
struct Tap {
  c: u32,
  ky: u32,
  kx: u32,
  kind: u32,  // 0: an input tap, 1: the intercept, 2: a target column, 3: past the edge
  m: u32,     // target channel when kind == 2
}

fn decode(col: u32) -> Tap {
  let k = params.features - 1u;
  if (col < k) {
    let per = params.kh * params.kw;
    let c = col / per;
    let r = col - c * per;
    return Tap(c, r / params.kw, r % params.kw, 0u, 0u);
  }
  if (col == k) {
    return Tap(0u, 0u, 0u, 1u, 0u);
  }
  if (col < params.features + params.targets) {
    return Tap(0u, 0u, 0u, 2u, col - params.features);
  }
  return Tap(0u, 0u, 0u, 3u, 0u);
}

// The value of column `t` at position (n, oy, ox); iy0/ix0: the window's top-left (may be < 0).
fn value(t: Tap, n: u32, oy: u32, ox: u32, iy0: i32, ix0: i32) -> f32 {
  switch (t.kind) {
    case 0u: {
      let iy = iy0 + i32(t.ky);
      let ix = ix0 + i32(t.kx);
      if (iy < 0 || ix < 0 || iy >= i32(params.h) || ix >= i32(params.w)) {
        return 0.0f;
      }
      return input[((n * params.cin + t.c) * params.h + u32(iy)) * params.w + u32(ix)];
    }
    case 1u: {
      return 1.0f;
    }
    case 2u: {
      let at = ((n * params.targets + t.m) * params.oh + oy) * params.ow + ox;
      if (BASE) {
        return target_values[at] - base_values[at];
      }
      return target_values[at];
    }
    default: {
      return 0.0f;
    }
  }
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let cols = params.features + params.targets;
  let j0 = gid.x * TN;
  let i0 = gid.y * TM;
  if (i0 >= params.features || j0 >= cols) {
    return;
  }
  // Entirely below the diagonal of X^T X: the mirror of a block computed elsewhere.
  if (j0 + TN <= i0) {
    return;
  }
  var rows: array<Tap, TM>;
  for (var a = 0u; a < TM; a++) {
    rows[a] = decode(select(i0 + a, cols, i0 + a >= params.features));
  }
  var columns: array<Tap, TN>;
  for (var b = 0u; b < TN; b++) {
    columns[b] = decode(j0 + b);
  }
  var acc = array<array<f32, TN>, TM>();
  for (var n = 0u; n < params.batch; n++) {
    for (var oy = 0u; oy < params.oh; oy++) {
      let iy0 = i32(oy * params.stride_h) - i32(params.pad_h);
      for (var ox = 0u; ox < params.ow; ox++) {
        let ix0 = i32(ox * params.stride_w) - i32(params.pad_w);
        var av: array<f32, TM>;
        for (var a = 0u; a < TM; a++) {
          av[a] = value(rows[a], n, oy, ox, iy0, ix0);
        }
        for (var b = 0u; b < TN; b++) {
          let bv = value(columns[b], n, oy, ox, iy0, ix0);
          for (var a = 0u; a < TM; a++) {
            acc[a][b] = fma(av[a], bv, acc[a][b]);
          }
        }
      }
    }
  }
  for (var a = 0u; a < TM; a++) {
    let i = i0 + a;
    if (i >= params.features) {
      break;
    }
    for (var b = 0u; b < TN; b++) {
      let j = j0 + b;
      if (j < cols) {
        gram[i * cols + j] += acc[a][b];
      }
    }
  }
}
