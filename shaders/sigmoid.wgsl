// Elementwise logistic sigmoid 1 / (1 + exp(-x)) (torch.sigmoid), out of place.
// Written so that large |x| saturates to 0 or 1 without overflow to NaN.

const WG: u32 = 64u;

struct Params {
  count: u32,
  row_pitch: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let index = gid.y * params.row_pitch + gid.x;
  if (index >= params.count) {
    return;
  }
  let x = input[index];
  let e = exp(-abs(x));
  let s = 1.0 / (1.0 + e);
  output[index] = select(e * s, s, x >= 0.0);
}
