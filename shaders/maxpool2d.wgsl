// maxpool2d, NCHW: torch.nn.functional.max_pool2d(x, k, stride, padding), ceil_mode=False,
// dilation 1; padded positions never win (torch pads with -inf). One invocation per output value.

const WG: u32 = 64u;

struct Params {
  planes: u32,   // batch * channels
  h: u32,
  w: u32,
  oh: u32,
  ow: u32,
  kernel: u32,
  stride: u32,
  pad: u32,
  row_pitch: u32, // invocations per grid row (grid is 2-D when large)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let index = gid.y * params.row_pitch + gid.x;
  let ohw = params.oh * params.ow;
  if (index >= params.planes * ohw) {
    return;
  }
  let plane = index / ohw;
  let r = index - plane * ohw;
  let oy = r / params.ow;
  let ox = r - oy * params.ow;
  let y0 = i32(oy * params.stride) - i32(params.pad);
  let x0 = i32(ox * params.stride) - i32(params.pad);
  let base = plane * params.h * params.w;
  var best = -3.402823466e+38f;
  var seen = false;
  for (var ky = 0u; ky < params.kernel; ky++) {
    let y = y0 + i32(ky);
    if (y < 0 || y >= i32(params.h)) {
      continue;
    }
    for (var kx = 0u; kx < params.kernel; kx++) {
      let x = x0 + i32(kx);
      if (x < 0 || x >= i32(params.w)) {
        continue;
      }
      let v = input[base + u32(y) * params.w + u32(x)];
      // NaN propagates, as in torch (`val > max || isnan(val)`).
      if (!seen || v > best || v != v) {
        best = v;
        seen = true;
      }
    }
  }
  output[index] = best;
}
