// RPN output: the boxes of the NMS survivors, in their (descending-score) order; slots past the
// kept count are zeroed. proposals[i] = cand_boxes[kept[i]].

const WG: u32 = 64u;

struct Params {
  max_boxes: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> cand_boxes: array<f32>;
@group(0) @binding(2) var<storage, read> kept: array<u32>;
@group(0) @binding(3) var<storage, read> kept_count: array<u32>;
@group(0) @binding(4) var<storage, read_write> boxes: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= params.max_boxes) {
    return;
  }
  let live = i < kept_count[0];
  let s = select(0u, kept[i], live);
  for (var j = 0u; j < 4u; j++) {
    boxes[i * 4u + j] = select(0.0, cand_boxes[s * 4u + j], live);
  }
}
