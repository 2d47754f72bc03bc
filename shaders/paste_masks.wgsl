// paste_masks_in_image(masks, boxes, (H, W), padding) from torchvision roi_heads.py, then
// binarisation (prob > threshold), bit-packed: each mask is H rows of row_words u32 words, pixel x
// in bit x & 31 of word x >> 5; bits past W are 0.
// Entry `expand_boxes` (one invocation per detection): expand_boxes(box, (M+2p)/M) in float32,
// truncated toward zero as .to(int64), the resized mask size max(x1 - x0 + 1, 1) and the bilinear
// scales float32((M+2p) / size). Entry `main` (one invocation per output word): pixels inside the
// clipped box sample F.interpolate(F.pad(mask, p), (h, w), bilinear, align_corners=False); all
// others are 0. Detections at or past the count get empty boxes, hence all-zero masks.
//
// Bit-exactness with torch 1.13's CPU kernel (see tests/reference/paste_masks.ts): its source
// index is computed in double, so l1 = float32(scale*(d+0.5) - 0.5 - i0) is formed here from an
// exact product (Dekker's TwoProduct); its value is float32 of the 4-term sum of
// float32(h_i*w_j) * v_ij taken in double, so a pixel is set when that sum exceeds the midpoint
// between the threshold and the next float32 above it. A float32 estimate decides unless it lies
// within its error bound of that midpoint; then the sign of the exact sum is found with an
// expansion (TwoProduct + Shewchuk's Grow-Expansion). `separate` keeps the compiler from contracting or simplifying those sequences.

const WG: u32 = 64u;
const MASK: u32 = 28u;
const PADDING: u32 = 1u;

const PADDED: u32 = MASK + 2u * PADDING;

struct Params {
  max_detections: u32,
  height: u32,
  width: u32,
  row_words: u32,          // ceil(width / 32)
  expand_scale: f32,       // float32((MASK + 2 PADDING) / MASK)
  threshold: f32,
  threshold_half_ulp: f32, // half the gap from threshold to the next float32 above
  zero: u32,               // always 0 (see `separate`)
  row_pitch: u32,
}

struct PasteBox {
  x0: i32, // expanded integer box; the mask covers [x0, x1] x [y0, y1] before clipping
  y0: i32,
  x1: i32,
  y1: i32,
  width: i32, // resized mask size
  height: i32,
  scale_x: f32, // float32(PADDED / width)
  scale_y: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> masks: array<f32>;       // [max_detections][MASK][MASK]
@group(0) @binding(2) var<storage, read> boxes: array<vec4f>;     // original-image x1, y1, x2, y2
@group(0) @binding(3) var<storage, read> detection_count: array<u32>;
@group(0) @binding(4) var<storage, read_write> paste_boxes: array<PasteBox>;
@group(0) @binding(5) var<storage, read_write> bits: array<u32>;  // [max_detections][height][row_words]

// separate, split_hi, two_prod_err and div_rn come from exact_f32.wgsl (prepended).

@compute @workgroup_size(WG)
fn expand_boxes(@builtin(global_invocation_id) gid: vec3u) {
  let n = gid.x;
  if (n >= params.max_detections) {
    return;
  }
  if (n >= detection_count[0]) {
    paste_boxes[n] = PasteBox(0, 0, -1, -1, 1, 1, 1.0, 1.0);
    return;
  }
  let b = boxes[n];
  let w_half = separate(((b.z - b.x) * 0.5) * params.expand_scale);
  let h_half = separate(((b.w - b.y) * 0.5) * params.expand_scale);
  let x_c = (b.z + b.x) * 0.5;
  let y_c = (b.w + b.y) * 0.5;
  let x0 = i32(x_c - w_half);
  let y0 = i32(y_c - h_half);
  let x1 = i32(x_c + w_half);
  let y1 = i32(y_c + h_half);
  let width = max(x1 - x0 + 1, 1);
  let height = max(y1 - y0 + 1, 1);
  paste_boxes[n] = PasteBox(x0, y0, x1, y1, width, height, div_rn(f32(PADDED), f32(width)), div_rn(f32(PADDED), f32(height)));
}

struct Taps {
  i0: u32,
  i1: u32,
  l0: f32,
  l1: f32,
}

// ATen's linear source taps for output index d of `size` (torch 1.13: source index in double).
fn source_taps(d: u32, size: i32, scale: f32) -> Taps {
  if (size == i32(PADDED)) {
    return Taps(d, d, 1.0, 0.0);
  }
  let t = f32(d) + 0.5;
  let p = separate(scale * t);
  let e = two_prod_err(scale, t, p); // scale * t = p + e exactly
  var i0 = floor(max(p - 0.5, 0.0));
  // p - (i0 + 0.5) is exact, so l1 gets one rounding, of the exact src - i0.
  var l1 = separate(p - (i0 + 0.5)) + e;
  if (l1 < 0.0) {
    if (i0 == 0.0) {
      l1 = 0.0; // src < 0: clamped to 0
    } else {
      i0 -= 1.0; // p - 0.5 rounded up across an integer
      l1 = separate(p - (i0 + 0.5)) + e;
    }
  }
  let i = u32(i0);
  return Taps(i, i + select(0u, 1u, i < PADDED - 1u), 1.0 - l1, l1);
}

fn padded_value(base: u32, py: u32, px: u32) -> f32 {
  if (py < PADDING || py >= PADDING + MASK || px < PADDING || px >= PADDING + MASK) {
    return 0.0;
  }
  return masks[base + (py - PADDING) * MASK + (px - PADDING)];
}

// Adds x to the nonoverlapping expansion e[0..len) exactly (Shewchuk's Grow-Expansion: a chain of
// Knuth TwoSums; the expansion's components sum exactly to the running total).
fn grow_expansion(e: ptr<function, array<f32, 10>>, len: ptr<function, u32>, x: f32) {
  var q = x;
  for (var i = 0u; i < *len; i++) {
    let a = (*e)[i];
    let s = separate(q + a);
    let bb = separate(s - q);
    (*e)[i] = (q - separate(s - bb)) + (a - bb);
    q = s;
  }
  (*e)[*len] = q;
  *len += 1u;
}

// sum w_k v_k > threshold + threshold_half_ulp, decided exactly: the ten terms (4 products split
// exactly in two, and the two threshold parts) go into an expansion whose most significant
// nonzero component has the sign of the exact sum.
fn above_exact(w: vec4f, v: vec4f) -> bool {
  var e = array<f32, 10>();
  var len = 0u;
  grow_expansion(&e, &len, -params.threshold);
  grow_expansion(&e, &len, -params.threshold_half_ulp);
  for (var k = 0u; k < 4u; k++) {
    let p = separate(w[k] * v[k]);
    grow_expansion(&e, &len, p);
    grow_expansion(&e, &len, two_prod_err(w[k], v[k], p));
  }
  for (var i = 10u; i > 0u; i--) {
    if (e[i - 1u] != 0.0) {
      return e[i - 1u] > 0.0;
    }
  }
  return false; // exactly on the midpoint: rounds to the (even) threshold, which is not above it
}

fn pixel_above(base: u32, ty: Taps, tx: Taps) -> bool {
  let w = vec4f(ty.l0 * tx.l0, ty.l0 * tx.l1, ty.l1 * tx.l0, ty.l1 * tx.l1);
  let v = vec4f(padded_value(base, ty.i0, tx.i0), padded_value(base, ty.i0, tx.i1), padded_value(base, ty.i1, tx.i0), padded_value(base, ty.i1, tx.i1));
  let prod = w * v;
  let d = ((prod.x + prod.y) + (prod.z + prod.w)) - params.threshold;
  // The float32 estimate is within a few ulps of the sum's magnitude; 2^-18 of it is a safe bound.
  let margin = (abs(prod.x) + abs(prod.y) + abs(prod.z) + abs(prod.w)) * 3.8147e-6;
  if (d > margin) {
    return true;
  }
  if (d < -margin) {
    return false;
  }
  return above_exact(w, v);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let index = gid.y * params.row_pitch + gid.x;
  let per_mask = params.height * params.row_words;
  if (index >= params.max_detections * per_mask) {
    return;
  }
  let n = index / per_mask;
  let r = index - n * per_mask;
  let row = r / params.row_words;
  let word = r - row * params.row_words;
  let y = i32(row);
  let box = paste_boxes[n];
  let x_begin = max(max(box.x0, 0), i32(word * 32u));
  let x_end = min(min(box.x1 + 1, i32(params.width)), i32(word * 32u) + 32);
  if (y < max(box.y0, 0) || y >= min(box.y1 + 1, i32(params.height)) || x_begin >= x_end) {
    bits[index] = 0u;
    return;
  }
  let ty = source_taps(u32(y - box.y0), box.height, box.scale_y);
  let base = n * MASK * MASK;
  var out = 0u;
  for (var x = x_begin; x < x_end; x++) {
    let tx = source_taps(u32(x - box.x0), box.width, box.scale_x);
    if (pixel_above(base, ty, tx)) {
      out |= 1u << (u32(x) & 31u);
    }
  }
  bits[index] = out;
}
