// FPN top-down step: out = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest").
// torch's legacy "nearest" picks src = min(floor(dst * scale), in - 1) with scale = float(in) / out
// computed in float32; the scale comes in as a uniform computed on the CPU (WGSL's f32 division
// is not correctly rounded, its multiplication is), so odd sizes index exactly as torch does.

const WG: u32 = 64u;

struct Params {
  planes: u32,
  h: u32,        // lateral / output size
  w: u32,
  top_h: u32,
  top_w: u32,
  scale_h: f32,  // fround(top_h / h)
  scale_w: f32,
  row_pitch: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lateral: array<f32>;
@group(0) @binding(2) var<storage, read> top: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let index = gid.y * params.row_pitch + gid.x;
  let hw = params.h * params.w;
  if (index >= params.planes * hw) {
    return;
  }
  let plane = index / hw;
  let r = index - plane * hw;
  let y = r / params.w;
  let x = r - y * params.w;
  let sy = min(u32(floor(f32(y) * params.scale_h)), params.top_h - 1u);
  let sx = min(u32(floor(f32(x) * params.scale_w)), params.top_w - 1u);
  output[index] = lateral[index] + top[(plane * params.top_h + sy) * params.top_w + sx];
}
