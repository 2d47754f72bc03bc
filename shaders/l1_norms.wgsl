// L1 norms of many weight segments in one pass (Li et al. 2017, "Pruning Filters for Efficient
// ConvNets": a filter's score is sum |w| over its input channels and kernel window). One
// invocation per segment sums |w| over the segment's values, in order.
//
// The weights of many tensors are packed into one buffer; `runs` describes them: each run is
// `count` consecutive segments of `size` values starting at `offset`, whose norms go to
// norms[out_base + start ...]. Runs are sorted by `start`, so an invocation finds its run by
// binary search. A whole model (every conv filter, or every k x k kernel) is one dispatch per
// weight buffer.

const WG: u32 = 64u;

struct Params {
  segments: u32,  // segments in this dispatch (sum of the runs' counts)
  runs: u32,
  out_base: u32,  // where this dispatch's first norm goes in `norms`
  row_pitch: u32, // invocations per grid row (the grid is 2-D when large)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
// (offset, size, count, start) per run.
@group(0) @binding(2) var<storage, read> runs: array<vec4u>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let index = gid.y * params.row_pitch + gid.x;
  if (index >= params.segments) {
    return;
  }
  // The last run whose start is <= index.
  var lo = 0u;
  var hi = params.runs - 1u;
  while (lo < hi) {
    let mid = (lo + hi + 1u) / 2u;
    if (runs[mid].w <= index) {
      lo = mid;
    } else {
      hi = mid - 1u;
    }
  }
  let run = runs[lo];
  let begin = run.x + (index - run.w) * run.y;
  var sum = 0.0f;
  for (var i = 0u; i < run.y; i++) {
    sum += abs(weights[begin + i]);
  }
  norms[params.out_base + index] = sum;
}
