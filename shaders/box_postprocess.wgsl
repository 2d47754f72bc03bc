// RoIHeads.postprocess_detections, first half (torchvision, eval): per proposal, softmax over the
// class logits, decode each class's deltas against the proposal (BoxCoder weights (10, 10, 5, 5),
// dw/dh clamped at log(1000/16)), clip to the resized image, then for classes 1..C-1 keep
// candidates with score > score_thresh and both sides >= min_size. Candidate slot
// k * (C - 1) + (c - 1) (torchvision's flatten order): box, sort key (score, or -inf when
// dropped), group (the class label, since NMS runs per class). Proposals >= the RPN's kept count
// are padding and produce nothing.

const WG: u32 = 64u;

struct Params {
  max_proposals: u32,
  classes: u32,       // C, including background
  image_h: f32,
  image_w: f32,
  score_thresh: f32,
  min_size: f32,
  clip: f32,
  wx: f32,
  wy: f32,
  ww: f32,
  wh: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> proposals: array<f32>;     // [max_proposals][4]
@group(0) @binding(2) var<storage, read> proposal_count: array<u32>;
@group(0) @binding(3) var<storage, read> class_logits: array<f32>;  // [max_proposals][C]
@group(0) @binding(4) var<storage, read> box_deltas: array<f32>;    // [max_proposals][C][4]
@group(0) @binding(5) var<storage, read_write> cand_boxes: array<f32>;
@group(0) @binding(6) var<storage, read_write> cand_keys: array<f32>;
@group(0) @binding(7) var<storage, read_write> cand_group: array<u32>;
@group(0) @binding(8) var<storage, read_write> cand_valid: array<u32>;

const NEG_INF: f32 = -3.402823466e+38f;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let k = gid.x;
  if (k >= params.max_proposals) {
    return;
  }
  let C = params.classes;
  let live = k < proposal_count[0];

  var m = NEG_INF;
  for (var c = 0u; c < C; c++) {
    m = max(m, class_logits[k * C + c]);
  }
  var sum = 0.0;
  for (var c = 0u; c < C; c++) {
    sum += exp(class_logits[k * C + c] - m);
  }

  let px1 = proposals[k * 4u];
  let py1 = proposals[k * 4u + 1u];
  let px2 = proposals[k * 4u + 2u];
  let py2 = proposals[k * 4u + 3u];
  let widths = px2 - px1;
  let heights = py2 - py1;
  let ctr_x = px1 + 0.5 * widths;
  let ctr_y = py1 + 0.5 * heights;

  for (var c = 1u; c < C; c++) {
    let slot = k * (C - 1u) + (c - 1u);
    let score = exp(class_logits[k * C + c] - m) / sum;
    let d = (k * C + c) * 4u;
    let dx = box_deltas[d] / params.wx;
    let dy = box_deltas[d + 1u] / params.wy;
    let dw = min(box_deltas[d + 2u] / params.ww, params.clip);
    let dh = min(box_deltas[d + 3u] / params.wh, params.clip);
    let pcx = dx * widths + ctr_x;
    let pcy = dy * heights + ctr_y;
    let pw = exp(dw) * widths;
    let ph = exp(dh) * heights;
    let x1 = clamp(pcx - 0.5 * pw, 0.0, params.image_w);
    let y1 = clamp(pcy - 0.5 * ph, 0.0, params.image_h);
    let x2 = clamp(pcx + 0.5 * pw, 0.0, params.image_w);
    let y2 = clamp(pcy + 0.5 * ph, 0.0, params.image_h);
    cand_boxes[slot * 4u] = x1;
    cand_boxes[slot * 4u + 1u] = y1;
    cand_boxes[slot * 4u + 2u] = x2;
    cand_boxes[slot * 4u + 3u] = y2;
    cand_group[slot] = c;
    let keep = live && score > params.score_thresh && (x2 - x1) >= params.min_size && (y2 - y1) >= params.min_size;
    if (keep) {
      cand_keys[slot] = score;
      cand_valid[slot] = 1u;
    } else {
      cand_keys[slot] = NEG_INF;
      cand_valid[slot] = 0u;
    }
  }
}
