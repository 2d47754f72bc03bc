// Gathers the kept detections after the per-class NMS: boxes in resized-image coordinates (for
// the mask RoIAlign), scores, labels, and boxes scaled back to the original image
// (transform.postprocess: x * float32(orig_w / resized_w), y * float32(orig_h / resized_h)).
// Slots past the kept count are zeroed so the mask branch and the read-back see clean data.

const WG: u32 = 64u;

struct Params {
  max_detections: u32,
  ratio_h: f32,
  ratio_w: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> cand_boxes: array<f32>;
@group(0) @binding(2) var<storage, read> cand_keys: array<f32>;
@group(0) @binding(3) var<storage, read> cand_group: array<u32>;
@group(0) @binding(4) var<storage, read> kept: array<u32>;
@group(0) @binding(5) var<storage, read> kept_count: array<u32>;
@group(0) @binding(6) var<storage, read_write> boxes: array<f32>;        // [max][4] resized coords
@group(0) @binding(7) var<storage, read_write> result: array<f32>;       // [max][6]: x1 y1 x2 y2 (original), score, label
@group(0) @binding(8) var<storage, read_write> labels: array<u32>;       // [max]
@group(0) @binding(9) var<storage, read_write> orig_boxes: array<f32>;   // [max][4] original coords (for the paste)

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= params.max_detections) {
    return;
  }
  if (i >= kept_count[0]) {
    for (var j = 0u; j < 4u; j++) {
      boxes[i * 4u + j] = 0.0;
      orig_boxes[i * 4u + j] = 0.0;
    }
    for (var j = 0u; j < 6u; j++) {
      result[i * 6u + j] = 0.0;
    }
    labels[i] = 0u;
    return;
  }
  let s = kept[i];
  let x1 = cand_boxes[s * 4u];
  let y1 = cand_boxes[s * 4u + 1u];
  let x2 = cand_boxes[s * 4u + 2u];
  let y2 = cand_boxes[s * 4u + 3u];
  boxes[i * 4u] = x1;
  boxes[i * 4u + 1u] = y1;
  boxes[i * 4u + 2u] = x2;
  boxes[i * 4u + 3u] = y2;
  let o = vec4f(x1 * params.ratio_w, y1 * params.ratio_h, x2 * params.ratio_w, y2 * params.ratio_h);
  for (var j = 0u; j < 4u; j++) {
    result[i * 6u + j] = o[j];
    orig_boxes[i * 4u + j] = o[j];
  }
  result[i * 6u + 4u] = cand_keys[s];
  result[i * 6u + 5u] = f32(cand_group[s]);
  labels[i] = cand_group[s];
}
