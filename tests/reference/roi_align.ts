// CPU references for MultiScaleRoIAlign that emulate torch's float32 arithmetic with Math.fround
// (every product, sum and quotient rounded to float32 as the C++ code does; no FMA, since
// torchvision's CPU kernel is built for baseline x86-64).
// - roiAlignRef: torchvision csrc/ops/cpu/roi_align_kernel.cpp + roi_align_common.h
//   (pre_calc_for_bilinear_interpolate), aligned=False, sampling_ratio > 0, followed line by line.
// - levelMapperRef / multiScaleRoiAlignRef: torchvision ops/poolers.py (LevelMapper with
//   canonical scale 224, canonical level 4, eps 1e-6; k_min/k_max from the inferred scales).
// float32 emulation rather than float64: the sample positions feed a discontinuous rule (samples
// past the map's edge count as 0) and the level choice is a floor, so only torch's own rounding
// gives the same answers at the boundaries.

const f = Math.fround;

/** One feature map, [C][H][W] (batch 1). */
export interface FeatureMap {
  data: Float32Array;
  height: number;
  width: number;
}

export interface RoiAlignRefParams {
  channels: number;
  pooled: number;
  samplingRatio: number;
  spatialScale: number;
}

/** roi_align for `count` boxes (x1, y1, x2, y2, 4 floats each); output [count][C][P][P]. */
export function roiAlignRef(feature: FeatureMap, p: RoiAlignRefParams, boxes: Float32Array, count: number): Float32Array {
  const out = new Float32Array(count * p.channels * p.pooled * p.pooled);
  for (let n = 0; n < count; n++) roiAlignOne(feature, p, boxes.subarray(4 * n, 4 * n + 4), out, n);
  return out;
}

function roiAlignOne(feature: FeatureMap, p: RoiAlignRefParams, box: Float32Array, out: Float32Array, n: number): void {
  if (!(p.samplingRatio > 0)) throw new Error('roiAlignRef: only sampling_ratio > 0 is emulated');
  const { height, width } = feature;
  const pooledH = p.pooled;
  const pooledW = p.pooled;
  const scale = f(p.spatialScale); // spatial_scale arrives as double, is used as T
  const offset = 0; // aligned=False
  const roiStartW = f(f(box[0] * scale) - offset);
  const roiStartH = f(f(box[1] * scale) - offset);
  const roiEndW = f(f(box[2] * scale) - offset);
  const roiEndH = f(f(box[3] * scale) - offset);
  let roiWidth = f(roiEndW - roiStartW);
  let roiHeight = f(roiEndH - roiStartH);
  // "Force malformed ROIs to be 1x1": std::max(roi_width, (T)1.) keeps NaN.
  roiWidth = roiWidth < 1 ? 1 : roiWidth;
  roiHeight = roiHeight < 1 ? 1 : roiHeight;
  const binSizeH = f(roiHeight / pooledH);
  const binSizeW = f(roiWidth / pooledW);
  const gridH = p.samplingRatio;
  const gridW = p.samplingRatio;
  const count = Math.max(gridH * gridW, 1);

  // pre_calc: positions and weights per (ph, pw, iy, ix), shared by all channels.
  const pos: number[][] = [];
  const wts: number[][] = [];
  for (let ph = 0; ph < pooledH; ph++)
    for (let pw = 0; pw < pooledW; pw++)
      for (let iy = 0; iy < gridH; iy++) {
        const yy = f(f(roiStartH + f(ph * binSizeH)) + f(f(f(iy + 0.5) * binSizeH) / gridH));
        for (let ix = 0; ix < gridW; ix++) {
          const xx = f(f(roiStartW + f(pw * binSizeW)) + f(f(f(ix + 0.5) * binSizeW) / gridW));
          let x = xx;
          let y = yy;
          if (y < -1.0 || y > height || x < -1.0 || x > width) {
            pos.push([0, 0, 0, 0]);
            wts.push([0, 0, 0, 0]);
            continue;
          }
          if (y <= 0) y = 0;
          if (x <= 0) x = 0;
          let yLow = Math.trunc(y);
          let xLow = Math.trunc(x);
          let yHigh: number;
          let xHigh: number;
          if (yLow >= height - 1) {
            yHigh = yLow = height - 1;
            y = yLow;
          } else yHigh = yLow + 1;
          if (xLow >= width - 1) {
            xHigh = xLow = width - 1;
            x = xLow;
          } else xHigh = xLow + 1;
          const ly = f(y - yLow);
          const lx = f(x - xLow);
          const hy = f(1 - ly);
          const hx = f(1 - lx);
          pos.push([yLow * width + xLow, yLow * width + xHigh, yHigh * width + xLow, yHigh * width + xHigh]);
          wts.push([f(hy * hx), f(hy * lx), f(ly * hx), f(ly * lx)]);
        }
      }

  const plane = height * width;
  const bins = pooledH * pooledW;
  for (let c = 0; c < p.channels; c++) {
    const input = feature.data.subarray(c * plane, (c + 1) * plane);
    let k = 0;
    for (let bin = 0; bin < bins; bin++) {
      let outputVal = 0;
      for (let s = 0; s < gridH * gridW; s++, k++) {
        const [p1, p2, p3, p4] = pos[k];
        const [w1, w2, w3, w4] = wts[k];
        const sum = f(f(f(f(w1 * input[p1]) + f(w2 * input[p2])) + f(w3 * input[p3])) + f(w4 * input[p4]));
        outputVal = f(outputVal + sum);
      }
      out[((n * p.channels + c) * pooledH * pooledW) + bin] = f(outputVal / count);
    }
  }
}

/**
 * LevelMapper as torch evaluates it in float32: index into the feature list, or -1 when the area
 * is NaN/negative (torch's level is then NaN and matches no feature, so the RoI pools zeros).
 * torch's float log2 (Sleef / glibc) is emulated by Math.log2 rounded to float32.
 */
export function levelMapperRef(box: ArrayLike<number>, kMin: number, kMax: number): number {
  const area = f(f(box[2] - box[0]) * f(box[3] - box[1]));
  const s = f(Math.sqrt(area));
  const lvl = Math.floor(f(f(4 + f(Math.log2(f(s / 224)))) + f(1e-6)));
  if (Number.isNaN(lvl)) return -1;
  return Math.min(Math.max(lvl, kMin), kMax) - kMin;
}

/**
 * MultiScaleRoIAlign for one image: `scales` are the per-level spatial scales (1/4 .. 1/32);
 * output [rows][C][P][P] with rows = max(count, rows), zeros past `count` and for unmapped RoIs.
 */
export function multiScaleRoiAlignRef(
  features: FeatureMap[],
  scales: number[],
  p: { channels: number; pooled: number; samplingRatio: number },
  boxes: Float32Array,
  count: number,
  rows = count,
): Float32Array {
  const kMin = Math.trunc(-Math.log2(scales[0]));
  const kMax = Math.trunc(-Math.log2(scales[scales.length - 1]));
  const per = p.channels * p.pooled * p.pooled;
  const out = new Float32Array(Math.max(rows, count) * per);
  for (let n = 0; n < count; n++) {
    const box = boxes.subarray(4 * n, 4 * n + 4);
    const level = levelMapperRef(box, kMin, kMax);
    if (level < 0 || level >= features.length) continue;
    out.set(roiAlignRef(features[level], { ...p, spatialScale: scales[level] }, box, 1), n * per);
  }
  return out;
}
