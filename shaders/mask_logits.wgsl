// The mask predictor's last layer for each detection's predicted class only, then the sigmoid
// (torchvision: mask_fcn_logits, a 1x1 conv to every class, then maskrcnn_inference's
// x.sigmoid()[index, labels]): logit = bias[l] + sum over c of w[l][c] * x[n][c][p] with l the
// detection's label, summed in the channel order conv2d.wgsl sums a 1x1 conv (fma from zero, then
// + bias), so the logits are bit-identical to the full conv's; the other classes' logits (90 of
// 91 for COCO, 1.8 GMAC at 100 detections) are never computed. [N][C][M][M] -> [N][M][M];
// detections past the kept count get zeros.

const WG: u32 = 64u;

struct Params {
  max_detections: u32,
  channels: u32,
  classes: u32,
  pixels: u32,    // M * M
  row_pitch: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> features: array<f32>; // [N][C][M][M], after the ReLU
@group(0) @binding(2) var<storage, read> weight: array<f32>;   // [classes][C] (torch's [classes][C][1][1])
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [classes]
@group(0) @binding(4) var<storage, read> labels: array<u32>;
@group(0) @binding(5) var<storage, read> kept_count: array<u32>;
@group(0) @binding(6) var<storage, read_write> probs: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * params.row_pitch + gid.x;
  if (i >= params.max_detections * params.pixels) {
    return;
  }
  let n = i / params.pixels;
  let p = i - n * params.pixels;
  if (n >= kept_count[0]) {
    probs[i] = 0.0;
    return;
  }
  let l = min(labels[n], params.classes - 1u);
  let w0 = l * params.channels;
  let x0 = n * params.channels * params.pixels + p;
  var acc = 0.0;
  for (var c = 0u; c < params.channels; c++) {
    acc = fma(weight[w0 + c], features[x0 + c * params.pixels], acc);
  }
  let x = acc + bias[l];
  let e = exp(-abs(x));
  let s = 1.0 / (1.0 + e);
  probs[i] = select(e * s, s, x >= 0.0);
}
