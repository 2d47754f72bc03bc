// Bitonic sort of (score, value) pairs, descending by score, ties by value ascending, over the
// padded power of two `padded` (sort_common.wgsl holds the key transform and the tile network).
// Entry points, recorded in this order by engine/kernels/sort.ts:
//   local_sort   load a tile (empty slots, invalid flags and positions >= count -> SENTINEL), run
//                every stage that fits in the tile
//   global_step  one compare-exchange step of stage k at distance j >= block, in global memory
//   local_merge  the steps j < block of stage k, in the tile
//   emit         decode the first out_limit elements into out_keys / out_values, and out_count

struct Params {
  n: u32,          // elements to sort
  in_offset: u32,  // element of keys / values / valid that is element 0
  padded: u32,     // power of two >= n: elements in scratch
  block: u32,      // tile size = min of padded and BLOCK
  k: u32,          // bitonic stage = size of the sequences being merged
  j: u32,          // compare distance of global_step
  row_pitch: u32,  // invocations per grid row
  out_limit: u32,  // elements emitted (at most n)
  out_offset: u32, // first element of out_keys / out_values written
  has_values: u32,
  has_valid: u32,
  has_count: u32,
  write_keys: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> count_in: array<u32>;
@group(0) @binding(2) var<storage, read> keys: array<f32>;
@group(0) @binding(3) var<storage, read> values: array<u32>;
@group(0) @binding(4) var<storage, read> valid: array<u32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<vec2u>;
@group(0) @binding(6) var<storage, read_write> out_keys: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_values: array<u32>;
@group(0) @binding(8) var<storage, read_write> out_count: array<u32>;

fn live_count() -> u32 {
  if (params.has_count != 0u) {
    return min(count_in[0], params.n);
  }
  return params.n;
}

fn load_element(i: u32, live: u32) -> vec2u {
  if (i >= live) {
    return vec2u(SENTINEL, SENTINEL);
  }
  if (params.has_valid != 0u) {
    if (valid[params.in_offset + i] == 0u) {
      return vec2u(SENTINEL, SENTINEL);
    }
  }
  var value = i;
  if (params.has_values != 0u) {
    value = values[params.in_offset + i];
  }
  return vec2u(desc_key(keys[params.in_offset + i]), value);
}

@compute @workgroup_size(WG)
fn local_sort(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  let base = wid.x * params.block;
  let live = live_count();
  for (var e = lid; e < params.block; e += WG) {
    tile[e] = load_element(base + e, live);
  }
  workgroupBarrier();
  sort_tile(lid, base, params.block);
  for (var e = lid; e < params.block; e += WG) {
    scratch[base + e] = tile[e];
  }
}

@compute @workgroup_size(WG)
fn global_step(@builtin(global_invocation_id) gid: vec3u) {
  let t = gid.y * params.row_pitch + gid.x;
  if (t >= params.padded / 2u) {
    return;
  }
  let j = params.j;
  let i = ((t & ~(j - 1u)) << 1u) | (t & (j - 1u));
  let l = i + j;
  let a = scratch[i];
  let b = scratch[l];
  let ascending = (i & params.k) == 0u;
  if (select(comes_before(a, b), comes_before(b, a), ascending)) {
    scratch[i] = b;
    scratch[l] = a;
  }
}

@compute @workgroup_size(WG)
fn local_merge(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  let base = wid.x * params.block;
  for (var e = lid; e < params.block; e += WG) {
    tile[e] = scratch[base + e];
  }
  workgroupBarrier();
  merge_tile(lid, base, params.block, params.k, params.block / 2u);
  for (var e = lid; e < params.block; e += WG) {
    scratch[base + e] = tile[e];
  }
}

@compute @workgroup_size(WG)
fn emit(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * params.row_pitch + gid.x;
  if (i >= params.out_limit) {
    return;
  }
  write_sorted(i, scratch[i], i + 1u < params.out_limit && scratch[i + 1u].x != SENTINEL);
}
