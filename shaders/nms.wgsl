// Greedy NMS over candidates already sorted by descending score (torchvision nms_kernel.cpp, and
// batched_nms: per group, or on boxes shifted by group * (max coordinate + 1), the "coordinate
// trick"). One workgroup walks the sorted candidates in blocks of WG, one per invocation:
//   1. each candidate is tested against every box kept so far (of its group), in parallel;
//   2. each survivor marks which earlier survivors of its block would suppress it (bit masks);
//   3. invocation 0 resolves the block in order with those masks and appends the kept boxes.
// A box's fate depends only on kept higher-scored boxes, so this equals the sequential greedy
// loop. It stops after max_keep kept boxes. Cost: count * kept IoU tests at most (spread over WG
// lanes) + count * WG / 2 for the masks, and 4 barriers per block.
//
// Kept boxes live in workgroup memory (KEPT_IN_WORKGROUP, the tuned variant) or are read again
// through `keep` from storage (the quick stand-in, engine/tiers.ts: with WG 32 it declares about
// 1 KiB of workgroup memory instead of 25 KiB, which Chromium's GL path compiles in a fraction of
// the time). Both test the same boxes in the same order: the results are identical.
//
// IoU is decided exactly as torch decides `inter / (area_i + area_j - inter) > thr`, with thr a
// double: w, h, inter, areas and the denominator are single correctly rounded f32 operations
// (opaque() keeps the compiler from fusing a product into the following add, which would skip
// a rounding), and since WGSL's f32 division is not correctly rounded, the rounded quotient is
// compared with the threshold by integer arithmetic whenever it is within 2^-18 (relative) of it.

const WG: u32 = 128u;        // candidates per block, a multiple of 32
const WORDS: u32 = WG / 32u; // u32 mask words per candidate
const KEPT_IN_WORKGROUP: bool = true;
const KEPT_SLOTS: u32 = 1000u; // max_keep when KEPT_IN_WORKGROUP (specialised), else 1
const SENTINEL: u32 = 0xffffffffu;

struct Params {
  n: u32,               // entries in order
  max_keep: u32,
  has_count: u32,
  has_groups: u32,
  trick_max_count: u32, // coordinate trick when the live count is <= this
  zero: u32,            // always 0; opaque() ORs it in
  mid_mant: u32,        // M: the midpoint between T and the next float up is M * 2^E
  mid_exp: i32,         // E
  tie_up: u32,          // 1 when a quotient exactly at the midpoint rounds up to the next float
  fast_lo: f32,         // below this the approximate quotient surely rounds to <= T
  fast_hi: f32,         // above this it surely rounds to > T
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> boxes: array<vec4f>;
@group(0) @binding(2) var<storage, read> groups: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read> count_in: array<u32>;
@group(0) @binding(5) var<storage, read_write> keep: array<u32>;
@group(0) @binding(6) var<storage, read_write> keep_count: array<u32>;

var<workgroup> kept_box: array<vec4f, KEPT_SLOTS>;
var<workgroup> kept_group: array<u32, KEPT_SLOTS>;
var<workgroup> cand_box: array<vec4f, WG>;
var<workgroup> cand_group: array<u32, WG>;
var<workgroup> cand_alive: array<u32, WG>;
var<workgroup> cand_mask: array<u32, WG * WORDS>;
var<workgroup> reduction: array<f32, WG>;
var<workgroup> n_kept: u32;
var<workgroup> live: u32;

fn opaque(x: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) | params.zero);
}

fn area(b: vec4f) -> f32 {
  return opaque((b.z - b.x) * (b.w - b.y));
}

// (mantissa, exponent) with x = mantissa * 2^exponent, for finite x > 0.
fn split_float(x: f32) -> vec2i {
  let bits = bitcast<u32>(x);
  let e = bits >> 23u;
  let f = bits & 0x7fffffu;
  if (e == 0u) {
    return vec2i(i32(f), -149);
  }
  return vec2i(i32(f | 0x800000u), i32(e) - 150);
}

// Full 64-bit product of two u32: (low word, high word).
fn mul_wide(a: u32, b: u32) -> vec2u {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let p00 = a0 * b0;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return vec2u((p00 & 0xffffu) | (mid << 16u), a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

fn shl64(v: vec2u, s: u32) -> vec2u {
  if (s == 0u) {
    return v;
  }
  if (s >= 32u) {
    return vec2u(0u, v.x << (s - 32u));
  }
  return vec2u(v.x << s, (v.y << s) | (v.x >> (32u - s)));
}

fn bit_length64(v: vec2u) -> i32 {
  if (v.y != 0u) {
    return 33 + i32(firstLeadingBit(v.y));
  }
  return 1 + i32(firstLeadingBit(v.x));
}

// Exact: does inter / denom (finite, > 0) round to a float above T? The rounded quotient is > T
// iff the exact one is > the midpoint m between T and the next float (or == m and the tie rounds
// up), i.e. iff inter > m * denom: a 25-bit by 24-bit product, compared in 64-bit integers.
fn quotient_rounds_above(inter: f32, denom: f32) -> bool {
  let x = split_float(inter);
  let d = split_float(denom);
  let product = mul_wide(params.mid_mant, u32(d.x));
  let bits_x = 1 + i32(firstLeadingBit(u32(x.x)));
  let bits_p = bit_length64(product);
  let top_x = bits_x + x.y;
  let top_p = bits_p + params.mid_exp + d.y;
  if (top_x != top_p) {
    return top_x > top_p;
  }
  var lhs = vec2u(u32(x.x), 0u);
  var rhs = product;
  if (bits_x < bits_p) {
    lhs = shl64(lhs, u32(bits_p - bits_x));
  } else {
    rhs = shl64(rhs, u32(bits_x - bits_p));
  }
  if (lhs.y != rhs.y) {
    return lhs.y > rhs.y;
  }
  if (lhs.x != rhs.x) {
    return lhs.x > rhs.x;
  }
  return params.tie_up != 0u;
}

// torch: suppress when float(inter / (area_k + area_c - inter)) > thr, k the kept box.
fn suppresses(k: vec4f, c: vec4f) -> bool {
  let w = max(0.0, min(k.z, c.z) - max(k.x, c.x));
  let h = max(0.0, min(k.w, c.w) - max(k.y, c.y));
  let inter = opaque(w * h);
  let denom = (area(k) + area(c)) - inter;
  if (!(denom > 0.0)) {
    // inter / 0 = +inf > thr; 0 / 0 = NaN and x / negative <= 0 are not (thr >= 0).
    return denom == 0.0 && inter > 0.0;
  }
  if (!(inter > 0.0)) {
    return false;
  }
  let q = inter / denom;
  if (q > params.fast_hi) {
    return true;
  }
  if (q < params.fast_lo) {
    return false;
  }
  return quotient_rounds_above(inter, denom);
}

// The box (shifted by the coordinate trick) and group of candidate `c`.
fn candidate(c: u32, trick: bool, scale: f32) -> vec4f {
  var box = boxes[c];
  if (trick) {
    box += vec4f(opaque(f32(candidate_group(c)) * scale));
  }
  return box;
}

fn candidate_group(c: u32) -> u32 {
  if (params.has_groups != 0u) {
    return groups[c];
  }
  return 0u;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) {
    var c = params.n;
    if (params.has_count != 0u) {
      c = min(count_in[0], params.n);
    }
    live = c;
    n_kept = 0u;
  }
  let count = workgroupUniformLoad(&live);
  let trick = count <= params.trick_max_count;
  var scale = 0.0; // max coordinate + 1, for the coordinate trick
  if (trick) {
    var m = bitcast<f32>(0xff7fffffu); // lowest finite f32
    for (var i = lid; i < count; i += WG) {
      let b = boxes[order[i]];
      m = max(m, max(max(b.x, b.y), max(b.z, b.w)));
    }
    reduction[lid] = m;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (lid < s) {
        reduction[lid] = max(reduction[lid], reduction[lid + s]);
      }
      workgroupBarrier();
    }
    scale = reduction[0] + 1.0;
  }

  for (var base = 0u; base < count; base += WG) {
    let i = base + lid;
    var alive = false;
    var box = vec4f(0.0);
    var group = 0u;
    if (i < count) {
      let c = order[i];
      box = candidate(c, trick, scale);
      group = candidate_group(c);
      alive = true;
      let nk = n_kept;
      for (var q = 0u; q < nk; q++) {
        if (KEPT_IN_WORKGROUP) {
          if ((trick || kept_group[q] == group) && suppresses(kept_box[q], box)) {
            alive = false;
            break;
          }
        } else {
          let k = keep[q];
          if ((trick || candidate_group(k) == group) && suppresses(candidate(k, trick, scale), box)) {
            alive = false;
            break;
          }
        }
      }
    }
    cand_box[lid] = box;
    cand_group[lid] = group;
    cand_alive[lid] = u32(alive);
    workgroupBarrier();

    for (var w = 0u; w < WORDS; w++) {
      var bits = 0u;
      if (alive) {
        for (var b = 0u; b < 32u; b++) {
          let j = w * 32u + b;
          if (j >= lid) {
            break;
          }
          if (cand_alive[j] != 0u && (trick || cand_group[j] == group) && suppresses(cand_box[j], box)) {
            bits |= 1u << b;
          }
        }
      }
      cand_mask[lid * WORDS + w] = bits;
    }
    workgroupBarrier();

    if (lid == 0u) {
      var nk = n_kept;
      // Explicitly zeroed: Dawn on lavapipe was seen not to re-zero an uninitialised var declared in a loop.
      var kept_bits = array<u32, WORDS>();
      let block_end = min(WG, count - base);
      for (var j = 0u; j < block_end && nk < params.max_keep; j++) {
        if (cand_alive[j] == 0u) {
          continue;
        }
        var hit = false;
        for (var w = 0u; w <= j / 32u; w++) {
          hit = hit || (cand_mask[j * WORDS + w] & kept_bits[w]) != 0u;
        }
        if (hit) {
          continue;
        }
        kept_bits[j / 32u] |= 1u << (j % 32u);
        if (KEPT_IN_WORKGROUP) {
          kept_box[nk] = cand_box[j];
          kept_group[nk] = cand_group[j];
        }
        keep[nk] = order[base + j];
        nk++;
      }
      n_kept = nk;
    }
    if (!KEPT_IN_WORKGROUP) {
      storageBarrier(); // the next block reads this block's `keep` writes
    }
    if (workgroupUniformLoad(&n_kept) >= params.max_keep) {
      break;
    }
  }

  let kept = workgroupUniformLoad(&n_kept);
  if (lid == 0u) {
    keep_count[0] = kept;
  }
  for (var q = kept + lid; q < params.max_keep; q += WG) {
    keep[q] = SENTINEL;
  }
}
