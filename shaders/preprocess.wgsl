// GeneralizedRCNNTransform for one image, in torchvision's order: normalise, then bilinear resize
// (F.interpolate, align_corners=False, recompute_scale_factor=True), then zero-pad bottom/right
// to the padded size. Input: RGB bytes (packed 4 per u32). Output: [3][padded_h][padded_w] f32.
//
// Normalisation goes through a 3x256 table computed on the CPU in float32 exactly like torch
// ((x / 255 - mean) / std, each op rounded to float32), since WGSL's f32 division is not
// correctly rounded. The resize follows ATen's upsample_bilinear2d: src = scale * (d + 0.5) - 0.5
// clamped at 0, i0 = min(floor(src), in - 1), i1 = i0 + (i0 < in - 1), l1 = clamp(src - i0, 0, 1),
// height weights outside, width weights inside; scale = float32(in / out) comes from the CPU.
//
// One dispatch writes a band of output rows [row_start, row_start + rows) (all 3 channels) and
// reads `rgb`, a window of the image starting at its u32 word `word_start`: an image larger than
// a storage binding is split into bands, each with the input rows it samples.

const WG: u32 = 64u;

struct Params {
  in_h: u32,
  in_w: u32,
  out_h: u32,      // resized (unpadded) size
  out_w: u32,
  padded_h: u32,
  padded_w: u32,
  scale_h: f32,    // fround(in_h / out_h)
  scale_w: f32,
  row_pitch: u32,
  row_start: u32,  // first padded output row of this band
  rows: u32,       // output rows in this band
  word_start: u32, // the image's u32 word held at rgb[0]
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> rgb: array<u32>;
@group(0) @binding(2) var<storage, read> normalized: array<f32>; // [3][256]
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

fn pixel(c: u32, y: u32, x: u32) -> f32 {
  let byte_index = (y * params.in_w + x) * 3u + c;
  let v = (rgb[(byte_index >> 2u) - params.word_start] >> ((byte_index & 3u) * 8u)) & 0xffu;
  return normalized[c * 256u + v];
}

struct Taps {
  i0: u32,
  i1: u32,
  l0: f32,
  l1: f32,
}

fn source_taps(d: u32, in_size: u32, out_size: u32, scale: f32) -> Taps {
  if (in_size == out_size) {
    return Taps(d, d, 1.0, 0.0);
  }
  let src = max(fma(scale, f32(d) + 0.5, -0.5), 0.0);
  let i0 = min(u32(floor(src)), in_size - 1u);
  let i1 = i0 + select(0u, 1u, i0 < in_size - 1u);
  let l1 = clamp(src - f32(i0), 0.0, 1.0);
  return Taps(i0, i1, 1.0 - l1, l1);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let band_index = gid.y * params.row_pitch + gid.x;
  let band_plane = params.rows * params.padded_w;
  if (band_index >= 3u * band_plane) {
    return;
  }
  let c = band_index / band_plane;
  let r = band_index - c * band_plane;
  let y = params.row_start + r / params.padded_w;
  let x = r % params.padded_w;
  let index = (c * params.padded_h + y) * params.padded_w + x;
  if (y >= params.out_h || x >= params.out_w) {
    output[index] = 0.0;
    return;
  }
  let ty = source_taps(y, params.in_h, params.out_h, params.scale_h);
  let tx = source_taps(x, params.in_w, params.out_w, params.scale_w);
  let top = fma(tx.l0, pixel(c, ty.i0, tx.i0), tx.l1 * pixel(c, ty.i0, tx.i1));
  let bottom = fma(tx.l0, pixel(c, ty.i1, tx.i0), tx.l1 * pixel(c, ty.i1, tx.i1));
  output[index] = fma(ty.l0, top, ty.l1 * bottom);
}
