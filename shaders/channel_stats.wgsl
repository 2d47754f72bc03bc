// Per-channel mean and (biased) variance of an NCHW tensor over batch and space: what a
// BatchNorm2d in training mode normalises with (torch.nn.functional.batch_norm, training=True:
// var = mean((x - mean)^2), the biased estimate; the unbiased one for running_var is var * n /
// (n - 1), formed by the caller who knows n). One workgroup per channel; each invocation runs
// Welford's update over a strided share of the channel's N * H * W values, then the workgroup
// merges the partial (count, mean, M2) triples pairwise with Chan et al.'s formula, so no sum of
// squares is ever subtracted from another (no cancellation when |mean| >> std).
// Writes stats[2 * (offset + c)] = mean, stats[2 * (offset + c) + 1] = var: many layers' stats
// share one buffer, read back once.

const WG: u32 = 256u;

struct Params {
  batch: u32,
  channels: u32,
  plane: u32,   // H * W
  offset: u32,  // channel offset of this tensor in `stats`
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;

var<workgroup> counts: array<f32, WG>;
var<workgroup> means: array<f32, WG>;
var<workgroup> m2s: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x;
  let t = lid.x;
  var n = 0.0f;
  var mean = 0.0f;
  var m2 = 0.0f;
  if (c < params.channels) {
    for (var b = 0u; b < params.batch; b++) {
      let base = (b * params.channels + c) * params.plane;
      for (var p = t; p < params.plane; p += WG) {
        let v = input[base + p];
        n += 1.0f;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
      }
    }
  }
  counts[t] = n;
  means[t] = mean;
  m2s[t] = m2;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (t < stride) {
      let nb = counts[t + stride];
      if (nb > 0.0f) {
        let na = counts[t];
        let total = na + nb;
        let d = means[t + stride] - means[t];
        means[t] = means[t] + d * (nb / total);
        m2s[t] = m2s[t] + m2s[t + stride] + d * d * (na * nb / total);
        counts[t] = total;
      }
    }
    workgroupBarrier();
  }
  if (t == 0u && c < params.channels) {
    let o = 2u * (params.offset + c);
    stats[o] = means[0];
    stats[o + 1u] = m2s[0] / max(counts[0], 1.0f);
  }
}
