// maskrcnn_inference: sigmoid of the mask logits of each detection's predicted class,
// [N][C][M][M] -> [N][M][M]. Detections past the kept count get zeros.

const WG: u32 = 64u;

struct Params {
  max_detections: u32,
  classes: u32,
  pixels: u32,    // M * M
  row_pitch: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> kept_count: array<u32>;
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * params.row_pitch + gid.x;
  if (i >= params.max_detections * params.pixels) {
    return;
  }
  let n = i / params.pixels;
  let p = i - n * params.pixels;
  if (n >= kept_count[0]) {
    probs[i] = 0.0;
    return;
  }
  let x = logits[(n * params.classes + labels[n]) * params.pixels + p];
  let e = exp(-abs(x));
  let s = 1.0 / (1.0 + e);
  probs[i] = select(e * s, s, x >= 0.0);
}
