// Shared by sort.wgsl and sort_topk.wgsl (engine/kernels/sort.ts puts this file in front of them):
// the order-preserving key transform and the bitonic network run in workgroup memory.
//
// An element is a pair (key, value) of u32. `key` is the float score turned into a u32 whose
// *ascending* order is the score's *descending* order, so one ascending sort of (key, value)
// pairs gives torch.sort(descending=True, stable=True) when value is the original index.
// NaN sorts as -inf and -0 as +0 (torch treats -0 == +0; it would put NaN first: see sort.ts).
// Keys of real scores are <= NEG_INF_KEY, so SENTINEL marks empty slots and sorts after all.

const WG: u32 = 256u;
// Elements per workgroup tile (8 bytes each); the wrapper lowers it to fit the device limit.
const BLOCK: u32 = 2048u;
const SENTINEL: u32 = 0xffffffffu;
const NEG_INF_KEY: u32 = 0xff800000u;

var<workgroup> tile: array<vec2u, BLOCK>;

fn desc_key(x: f32) -> u32 {
  var b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) {
    return NEG_INF_KEY; // NaN
  }
  if (b == 0x80000000u) {
    b = 0u; // -0 ties with +0
  }
  // Ascending u32 order of floats: flip all bits of negatives, set the sign bit of positives.
  let ascending = select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
  return ~ascending;
}

/** Inverse of desc_key (for keys of real scores). */
fn key_score(key: u32) -> f32 {
  let ascending = ~key;
  let b = select(~ascending, ascending & 0x7fffffffu, (ascending & 0x80000000u) != 0u);
  return bitcast<f32>(b);
}

fn comes_before(a: vec2u, b: vec2u) -> bool {
  return a.x < b.x || (a.x == b.x && a.y < b.y);
}

// Bitonic merge steps j = j_start, j_start/2, ..., 1 of stage `k` on tile[0..size), where tile[i]
// is element base + i of the whole sequence (the stage's direction depends on that index).
fn merge_tile(lid: u32, base: u32, size: u32, k: u32, j_start: u32) {
  for (var j = j_start; j > 0u; j >>= 1u) {
    for (var t = lid; t < size / 2u; t += WG) {
      let i = ((t & ~(j - 1u)) << 1u) | (t & (j - 1u));
      let l = i + j;
      let a = tile[i];
      let b = tile[l];
      let ascending = ((base + i) & k) == 0u;
      if (select(comes_before(a, b), comes_before(b, a), ascending)) {
        tile[i] = b;
        tile[l] = a;
      }
    }
    workgroupBarrier();
  }
}

// All stages k = 2 .. size, each direction set by the global index as the full network needs:
// the tile ends ascending when base is a multiple of 2*size, descending otherwise.
fn sort_tile(lid: u32, base: u32, size: u32) {
  for (var k = 2u; k <= size; k <<= 1u) {
    merge_tile(lid, base, size, k, k >> 1u);
  }
}

// Writes sorted element i (the last pass of both kernels; each declares params, out_keys,
// out_values and out_count). The filled elements are a prefix: the last filled one, or slot 0 when
// none is, writes the count.
fn write_sorted(i: u32, e: vec2u, next_filled: bool) {
  let filled = e.x != SENTINEL;
  if (params.write_keys != 0u) {
    out_keys[params.out_offset + i] = key_score(select(NEG_INF_KEY, e.x, filled));
  }
  out_values[params.out_offset + i] = select(SENTINEL, e.y, filled);
  if (filled && !next_filled) {
    out_count[0] = i + 1u;
  }
  if (i == 0u && !filled) {
    out_count[0] = 0u;
  }
}
