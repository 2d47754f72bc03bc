// BatchNorm2d in training mode, applied with statistics already on the GPU (channel_stats.wgsl):
//   y = (x - mean_c) * gamma_c / sqrt(var_c + eps) + beta_c  [+ residual]  [then ReLU]
// (torch.nn.functional.batch_norm, training=True: the batch's own mean and biased variance).
// A channel with gamma = 0, or with var + eps = 0 (a constant channel and eps 0, where torch
// would give 0 * inf = NaN), outputs beta: the limit the formula has for any finite x - mean.
// Pruning's constant "carrier" channels rely on the first rule (gamma 0, beta 1).
// One invocation per output value.

const WG: u32 = 64u;
const RELU: bool = false;
const RESIDUAL: bool = false;

struct Params {
  batch: u32,
  channels: u32,
  plane: u32,      // H * W
  offset: u32,     // channel offset of this layer in `stats`
  eps: f32,
  row_pitch: u32,  // invocations per grid row (the grid is 2-D when large)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;   // (mean, var) per channel
@group(0) @binding(3) var<storage, read> affine: array<f32>;  // (gamma, beta) per channel
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let index = gid.y * params.row_pitch + gid.x;
  if (index >= params.batch * params.channels * params.plane) {
    return;
  }
  let c = (index / params.plane) % params.channels;
  let s = 2u * (params.offset + c);
  let gamma = affine[2u * c];
  let beta = affine[2u * c + 1u];
  let denom = stats[s + 1u] + params.eps;
  var scale = 0.0f;
  if (gamma != 0.0f && denom > 0.0f) {
    scale = gamma / sqrt(denom);
  }
  var y = (input[index] - stats[s]) * scale + beta;
  if (RESIDUAL) {
    y += residual[index];
  }
  if (RELU) {
    y = max(y, 0.0f);
  }
  output[index] = y;
}
