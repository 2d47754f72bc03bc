// Top-k by bitonic selection (same order and key transform as sort.wgsl, sort_common.wgsl in
// front): with K = k rounded up to a power of two,
//   topk_first  each workgroup sorts one tile of `block` inputs and keeps its best K, sorted
//   topk_merge  each workgroup takes two sorted runs A, B of K and keeps the best K of A u B:
//               min(A[i], B[K-1-i]) is a bitonic sequence holding exactly those K (the first
//               half-cleaner of a bitonic merge), which log2(K) more steps sort
//   topk_emit   decode the first k of the last run into out_keys / out_values, and out_count
// Each merge round halves the number of runs, so n inputs cost one tile sort per `block`
// inputs plus about n/block merges of K elements: no full sort of n.

struct Params {
  n: u32,          // elements to select from
  in_offset: u32,  // element of keys / values that is element 0
  block: u32,      // inputs per topk_first tile (>= run)
  run: u32,        // K
  runs_in: u32,    // runs present in src (topk_merge)
  out_limit: u32,  // k
  out_offset: u32, // first element of out_keys / out_values written
  has_values: u32,
  has_count: u32,
  write_keys: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> count_in: array<u32>;
@group(0) @binding(2) var<storage, read> keys: array<f32>;
@group(0) @binding(3) var<storage, read> values: array<u32>;
@group(0) @binding(4) var<storage, read> src: array<vec2u>;
@group(0) @binding(5) var<storage, read_write> dst: array<vec2u>;
@group(0) @binding(6) var<storage, read_write> out_keys: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_values: array<u32>;
@group(0) @binding(8) var<storage, read_write> out_count: array<u32>;

fn load_element(i: u32, live: u32) -> vec2u {
  if (i >= live) {
    return vec2u(SENTINEL, SENTINEL);
  }
  var value = i;
  if (params.has_values != 0u) {
    value = values[params.in_offset + i];
  }
  return vec2u(desc_key(keys[params.in_offset + i]), value);
}

@compute @workgroup_size(WG)
fn topk_first(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  var live = params.n;
  if (params.has_count != 0u) {
    live = min(count_in[0], params.n);
  }
  let base = wid.x * params.block;
  for (var e = lid; e < params.block; e += WG) {
    tile[e] = load_element(base + e, live);
  }
  workgroupBarrier();
  sort_tile(lid, 0u, params.block);
  for (var e = lid; e < params.run; e += WG) {
    dst[wid.x * params.run + e] = tile[e];
  }
}

@compute @workgroup_size(WG)
fn topk_merge(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
  let run = params.run;
  let a = 2u * wid.x;
  let b = a + 1u;
  for (var e = lid; e < run; e += WG) {
    var x = src[a * run + e];
    if (b < params.runs_in) {
      let y = src[b * run + (run - 1u - e)];
      if (comes_before(y, x)) {
        x = y;
      }
    }
    tile[e] = x;
  }
  workgroupBarrier();
  // Stage k = run: ascending for every i < run.
  merge_tile(lid, 0u, run, run, run / 2u);
  for (var e = lid; e < run; e += WG) {
    dst[wid.x * run + e] = tile[e];
  }
}

@compute @workgroup_size(WG)
fn topk_emit(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= params.out_limit) {
    return;
  }
  write_sorted(i, src[i], i + 1u < params.out_limit && src[i + 1u].x != SENTINEL);
}
