// The design matrix of a least-squares conv refit, transposed: one row per column of [X | 1 | T],
// one column per sampled output position: positions p0, p0 + step, ..., p0 + (count - 1) * step
// of the flattened (n, oy, ox) range (step > 1 subsamples a large map evenly):
//   R[f][q] = input[n][c][oy * sh - ph + ky][ox * sw - pw + kx]   f = (c * KH + ky) * KW + kx < K
//             (0 where the window crosses the zero padding: torch's im2col, (c, ky, kx) order)
//   R[K][q] = 1                                                   (the intercept)
//   R[K + 1 + m][q] = target[n][m][oy][ox] - base[n][m][oy][ox]   (base optional)
// Columns q >= count up to `pitch` (a multiple of 4) are 0, so normal_equations.wgsl reads vec4s.
// One invocation per row and run of SEG positions.

const WG: u32 = 64u;
const BASE: bool = false;
const SEG: u32 = 32u;  // positions per invocation

struct Params {
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
  rows: u32,       // K + 1 + M
  targets: u32,    // M
  p0: u32,         // first position of this chunk
  step: u32,       // distance between sampled positions
  count: u32,      // positions in this chunk
  pitch: u32,      // R's row length: count rounded up to 4
  row_pitch: u32,  // invocations per grid row (the grid is 2-D when large)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;          // [N][Cin][H][W]
@group(0) @binding(2) var<storage, read> target_values: array<f32>;  // [N][M][OH][OW]
@group(0) @binding(3) var<storage, read> base_values: array<f32>;    // like target_values, when BASE
@group(0) @binding(4) var<storage, read_write> design: array<f32>;   // [rows][pitch]

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  // One invocation per row and run of SEG positions: the position's (n, oy, ox) is decoded once
  // and then stepped, since integer division has no vector form on CPU adapters.
  let index = gid.y * params.row_pitch + gid.x;
  let runs = (params.pitch + SEG - 1u) / SEG;
  if (index >= params.rows * runs) {
    return;
  }
  let r = index / runs;
  let q0 = (index - r * runs) * SEG;
  let q1 = min(q0 + SEG, params.pitch);
  let out = r * params.pitch;
  let k = params.rows - params.targets - 1u;
  let plane = params.oh * params.ow;
  let p = params.p0 + q0 * params.step;
  var n = p / plane;
  var oy = (p - n * plane) / params.ow;
  var ox = p - n * plane - oy * params.ow;
  // Row r's tap (input rows) or target channel, fixed along the run.
  let per = params.kh * params.kw;
  let c = r / per;
  let tap = r - c * per;
  let ky = tap / params.kw;
  let kx = tap - ky * params.kw;
  let m = r - k - 1u;
  for (var q = q0; q < q1; q++) {
    var v = 0.0f;
    if (q < params.count) {
      if (r < k) {
        let iy = i32(oy * params.stride_h + ky) - i32(params.pad_h);
        let ix = i32(ox * params.stride_w + kx) - i32(params.pad_w);
        if (iy >= 0 && ix >= 0 && iy < i32(params.h) && ix < i32(params.w)) {
          v = input[((n * params.cin + c) * params.h + u32(iy)) * params.w + u32(ix)];
        }
      } else if (r == k) {
        v = 1.0f;
      } else {
        let at = ((n * params.targets + m) * params.oh + oy) * params.ow + ox;
        v = target_values[at];
        if (BASE) {
          v -= base_values[at];
        }
      }
    }
    design[out + q] = v;
    ox += params.step;
    while (ox >= params.ow) {
      ox -= params.ow;
      oy += 1u;
      if (oy == params.oh) {
        oy = 0u;
        n += 1u;
      }
    }
  }
}
