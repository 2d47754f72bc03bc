// RPN objectness logits of one level, [A][H][W] as the 1x1 conv writes them, reordered to
// torchvision's flattened anchor order (y, x, a) (concat_box_prediction_layers), the order its
// per-level top-k ranks and breaks ties in.

const WG: u32 = 64u;

struct Params {
  anchors: u32,  // A
  h: u32,
  w: u32,
  row_pitch: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> scores: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * params.row_pitch + gid.x;
  let hw = params.h * params.w;
  if (i >= hw * params.anchors) {
    return;
  }
  let a = i % params.anchors;
  let pixel = i / params.anchors;
  scores[i] = logits[a * hw + pixel];
}
