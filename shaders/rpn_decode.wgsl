// RPN proposals of one level from its top-k anchors (torchvision RegionProposalNetwork.
// filter_proposals, eval): decode the deltas against the anchor (BoxCoder weights 1,1,1,1,
// dw/dh clamped at log(1000/16)), clip to the resized image, drop boxes with a side < min_size,
// and write candidates [offset + rank]: box, sort key (sigmoid(logit)), valid flag and
// group (the level, since NMS runs per level). `cand_valid` flags the candidates kept (the sort leaves the others out).
//
// Anchors (AnchorGenerator): anchor(y, x, a) = (x*sw, y*sh, x*sw, y*sh) + cell[a], where the
// strides are padded_size // grid_size and cell anchors come from the CPU (float32, rounded).

const WG: u32 = 64u;

struct Params {
  k: u32,           // top-k entries of this level
  offset: u32,      // first candidate slot of this level
  level: u32,
  anchors: u32,     // A
  h: u32,
  w: u32,
  stride_h: f32,
  stride_w: f32,
  image_h: f32,     // resized, unpadded
  image_w: f32,
  min_size: f32,
  score_thresh: f32, // on sigmoid(logit), compared with >=
  clip: f32,        // bbox_xform_clip as float32
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> top_logits: array<f32>;   // [k], descending
@group(0) @binding(2) var<storage, read> top_index: array<u32>;    // [k], (y, x, a) flat index
@group(0) @binding(3) var<storage, read> deltas: array<f32>;       // [4A][H][W]
@group(0) @binding(4) var<storage, read> cell: array<f32>;         // [A][4]
@group(0) @binding(5) var<storage, read_write> cand_boxes: array<f32>;
@group(0) @binding(6) var<storage, read_write> cand_keys: array<f32>;
@group(0) @binding(7) var<storage, read_write> cand_group: array<u32>;
@group(0) @binding(8) var<storage, read_write> cand_valid: array<u32>;

const NEG_INF: f32 = -3.402823466e+38f;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let r = gid.x;
  if (r >= params.k) {
    return;
  }
  let flat = top_index[r];
  let a = flat % params.anchors;
  let pixel = flat / params.anchors;
  let y = pixel / params.w;
  let x = pixel - y * params.w;
  let sx = f32(x) * params.stride_w;
  let sy = f32(y) * params.stride_h;
  let ax1 = sx + cell[a * 4u];
  let ay1 = sy + cell[a * 4u + 1u];
  let ax2 = sx + cell[a * 4u + 2u];
  let ay2 = sy + cell[a * 4u + 3u];

  let hw = params.h * params.w;
  let d = (a * 4u) * hw + pixel;
  let dx = deltas[d];
  let dy = deltas[d + hw];
  let dw = min(deltas[d + 2u * hw], params.clip);
  let dh = min(deltas[d + 3u * hw], params.clip);

  let widths = ax2 - ax1;
  let heights = ay2 - ay1;
  let ctr_x = ax1 + 0.5 * widths;
  let ctr_y = ay1 + 0.5 * heights;
  let pcx = dx * widths + ctr_x;
  let pcy = dy * heights + ctr_y;
  let pw = exp(dw) * widths;
  let ph = exp(dh) * heights;
  let x1 = clamp(pcx - 0.5 * pw, 0.0, params.image_w);
  let y1 = clamp(pcy - 0.5 * ph, 0.0, params.image_h);
  let x2 = clamp(pcx + 0.5 * pw, 0.0, params.image_w);
  let y2 = clamp(pcy + 0.5 * ph, 0.0, params.image_h);

  let slot = params.offset + r;
  cand_boxes[slot * 4u] = x1;
  cand_boxes[slot * 4u + 1u] = y1;
  cand_boxes[slot * 4u + 2u] = x2;
  cand_boxes[slot * 4u + 3u] = y2;
  cand_group[slot] = params.level;
  let prob = 1.0 / (1.0 + exp(-top_logits[r]));
  // A NaN logit fails every comparison and is dropped.
  let keep = (x2 - x1) >= params.min_size && (y2 - y1) >= params.min_size && prob >= params.score_thresh;
  if (keep) {
    cand_keys[slot] = prob;
    cand_valid[slot] = 1u;
  } else {
    cand_keys[slot] = NEG_INF;
    cand_valid[slot] = 0u;
  }
}
