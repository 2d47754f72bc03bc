// MultiScaleRoIAlign for one FPN level per dispatch: torchvision ops/poolers.py (LevelMapper) +
// the roi_align C++ CPU kernel (roi_align_kernel.cpp, pre_calc_for_bilinear_interpolate),
// aligned=False, fixed sampling ratio. Output [max_rois][C][P][P]; one invocation per
// (RoI, block of CHANNEL_BLOCK channels, output bin): it computes the bin's sample positions and
// weights once and applies them to each channel of its block.
//
// The same pipeline runs once per level; an invocation whose RoI maps to another level returns.
// The level comes from comparing the RoI's float32 area with thresholds computed on the CPU
// (engine/kernels/roiAlign.ts) that reproduce torch's float32 floor(4 + log2(sqrt(a)/224) + 1e-6).
// RoIs at or past the count, and RoIs with NaN/negative area (torch's level is NaN and matches no
// feature), are written with zeros by the level-0 dispatch.
//
// Rounding follows the C++ kernel (float32, each product and sum rounded, no FMA): divisions go
// through div_rn (WGSL's `/` may be 2.5 ulp off), and products that feed sums go through
// `separate`, an XOR with a uniform zero that compilers cannot see through, so they can neither
// contract a*b+c into an FMA nor re-associate the sums.

const WG: u32 = 64u;
const SAMPLING: u32 = 2u;
const CHANNEL_BLOCK: u32 = 16u;

const SAMPLES: u32 = SAMPLING * SAMPLING;
const COUNT_IS_POW2: bool = (SAMPLES & (SAMPLES - 1u)) == 0u;
const NO_LEVEL: u32 = 0xffffffffu;

struct Params {
  max_rois: u32,
  channels: u32,
  channel_blocks: u32, // ceil(channels / CHANNEL_BLOCK)
  level: u32,          // the feature index this dispatch pools (0 = P2)
  levels: u32,         // number of features
  height: u32,         // this level's feature map size
  width: u32,
  spatial_scale: f32,
  area_min_1: f32,     // smallest float32 area torch maps to feature index >= 1
  area_min_2: f32,
  area_min_3: f32,
  zero: u32,           // always 0 (see `separate`)
  row_pitch: u32,
  pooled: u32,         // output size P (a uniform: the box and mask heads share one pipeline)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> feature: array<f32>;   // [C][height][width]
@group(0) @binding(2) var<storage, read> boxes: array<vec4f>;   // x1, y1, x2, y2 per RoI
@group(0) @binding(3) var<storage, read> roi_count: array<u32>; // [0]: RoIs in use
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

fn separate4(x: vec4f) -> vec4f {
  return bitcast<vec4f>(bitcast<vec4u>(x) ^ vec4u(params.zero));
}

// separate, split_hi, two_prod_err and div_rn come from exact_f32.wgsl (prepended).

fn roi_level(box: vec4f) -> u32 {
  let area = (box.z - box.x) * (box.w - box.y);
  if (!(area >= 0.0)) {
    return NO_LEVEL;
  }
  let index = u32(area >= params.area_min_1) + u32(area >= params.area_min_2) + u32(area >= params.area_min_3);
  return min(index, params.levels - 1u);
}

struct Taps {
  pos: vec4u,
  w: vec4f,
}

// pre_calc_for_bilinear_interpolate for one sample point.
fn sample_taps(y_in: f32, x_in: f32) -> Taps {
  let height = params.height;
  let width = params.width;
  var y = y_in;
  var x = x_in;
  if (y < -1.0 || y > f32(height) || x < -1.0 || x > f32(width)) {
    return Taps(vec4u(0u), vec4f(0.0));
  }
  if (y <= 0.0) {
    y = 0.0;
  }
  if (x <= 0.0) {
    x = 0.0;
  }
  var y_low = u32(y);
  var x_low = u32(x);
  var y_high = y_low + 1u;
  var x_high = x_low + 1u;
  if (y_low >= height - 1u) {
    y_low = height - 1u;
    y_high = y_low;
    y = f32(y_low);
  }
  if (x_low >= width - 1u) {
    x_low = width - 1u;
    x_high = x_low;
    x = f32(x_low);
  }
  let ly = y - f32(y_low);
  let lx = x - f32(x_low);
  let hy = 1.0 - ly;
  let hx = 1.0 - lx;
  return Taps(
    vec4u(y_low * width + x_low, y_low * width + x_high, y_high * width + x_low, y_high * width + x_high),
    vec4f(hy * hx, hy * lx, ly * hx, ly * lx),
  );
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let index = gid.y * params.row_pitch + gid.x;
  let pooled = params.pooled;
  let bins = pooled * pooled;
  let per_roi = params.channel_blocks * bins;
  if (index >= params.max_rois * per_roi) {
    return;
  }
  let roi = index / per_roi;
  let r = index - roi * per_roi;
  let block = r / bins;
  let bin = r - block * bins;
  let c_begin = block * CHANNEL_BLOCK;
  let c_end = min(c_begin + CHANNEL_BLOCK, params.channels);
  let out_base = roi * params.channels * bins + bin;

  var box = vec4f(0.0);
  var level = NO_LEVEL;
  if (roi < min(roi_count[0], params.max_rois)) {
    box = boxes[roi];
    level = roi_level(box);
  }
  if (level == NO_LEVEL) {
    if (params.level == 0u) {
      for (var c = c_begin; c < c_end; c++) {
        output[out_base + c * bins] = 0.0;
      }
    }
    return;
  }
  if (level != params.level) {
    return;
  }

  let scale = params.spatial_scale;
  let start_w = box.x * scale;
  let start_h = box.y * scale;
  var roi_w = box.z * scale - start_w;
  var roi_h = box.w * scale - start_h;
  // "Force malformed ROIs to be 1x1" (std::max keeps NaN, so compare the same way).
  if (roi_w < 1.0) {
    roi_w = 1.0;
  }
  if (roi_h < 1.0) {
    roi_h = 1.0;
  }
  let bin_h = div_rn(roi_h, f32(pooled));
  let bin_w = div_rn(roi_w, f32(pooled));
  let ph = bin / pooled;
  let pw = bin - ph * pooled;
  let y_base = start_h + separate(f32(ph) * bin_h);
  let x_base = start_w + separate(f32(pw) * bin_w);

  var taps: array<Taps, SAMPLES>;
  for (var iy = 0u; iy < SAMPLING; iy++) {
    let y = y_base + div_rn(separate((f32(iy) + 0.5) * bin_h), f32(SAMPLING));
    for (var ix = 0u; ix < SAMPLING; ix++) {
      let x = x_base + div_rn(separate((f32(ix) + 0.5) * bin_w), f32(SAMPLING));
      taps[iy * SAMPLING + ix] = sample_taps(y, x);
    }
  }

  let plane = params.height * params.width;
  for (var c = c_begin; c < c_end; c++) {
    let offset = vec4u(c * plane);
    var acc = 0.0;
    for (var s = 0u; s < SAMPLES; s++) {
      let p = taps[s].pos + offset;
      let t = separate4(taps[s].w * vec4f(feature[p.x], feature[p.y], feature[p.z], feature[p.w]));
      acc = acc + (((t.x + t.y) + t.z) + t.w);
    }
    var value: f32;
    if (COUNT_IS_POW2) {
      value = acc * (1.0 / f32(SAMPLES));
    } else {
      value = div_rn(acc, f32(SAMPLES));
    }
    output[out_base + c * bins] = value;
  }
}
