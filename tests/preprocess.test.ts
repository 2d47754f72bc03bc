// Preprocessing (normalise, bilinear resize with the current torchvision size rule, pad to /32)
// and the anchor generator, against references and torchvision's documented values; images over
// a storage binding are preprocessed in bands of rows, bit-identical to one pass.

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { normalizationTable, preprocessBands, recordPreprocess, resizePlan, type ResizePlan } from '../engine/kernels/preprocess.ts';
import { Recorder } from '../engine/recorder.ts';
import { cellAnchors, levelStrides } from '../engine/maskrcnn/anchors.ts';
import { gpuSuite } from './harness.ts';
import { rng } from './random.ts';
import { preprocessRef } from './reference/preprocess.ts';
import { assertClose, exact, resample } from './tolerance.ts';

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

const sizes = suite('resize rule and anchors');
sizes('resized and padded sizes follow current torchvision (float64 scale)', () => {
  // Reference doc, section 2.2: the tv0.28/0.29 column.
  const cases: Array<[number, number, number, number, number, number]> = [
    [480, 640, 800, 1066, 800, 1088],
    [427, 640, 800, 1199, 800, 1216],
    [333, 500, 800, 1201, 800, 1216],
    [424, 640, 800, 1207, 800, 1216],
    [375, 500, 800, 1066, 800, 1088],
    [1000, 900, 888, 800, 896, 800],
    [2000, 3000, 800, 1200, 800, 1216],
  ];
  for (const [h, w, rh, rw, ph, pw] of cases) {
    const p = resizePlan(h, w);
    assert.equal([p.outH, p.outW, p.paddedH, p.paddedW], [rh, rw, ph, pw], `${h}x${w}`);
  }
});
sizes('cell anchors equal torchvision (round half to even)', () => {
  assert.equal(Array.from(cellAnchors(32)), [-23, -11, 23, 11, -16, -16, 16, 16, -11, -23, 11, 23]);
  assert.equal(Array.from(cellAnchors(64)), [-45, -23, 45, 23, -32, -32, 32, 32, -23, -45, 23, 45]);
  assert.equal(Array.from(cellAnchors(128)), [-91, -45, 91, 45, -64, -64, 64, 64, -45, -91, 45, 91]);
  assert.equal(Array.from(cellAnchors(256)), [-181, -91, 181, 91, -128, -128, 128, 128, -91, -181, 91, 181]);
  assert.equal(Array.from(cellAnchors(512)), [-362, -181, 362, 181, -256, -256, 256, 256, -181, -362, 181, 362]);
});
sizes('level strides use integer division (the pool level of 800 rows gets 61)', () => {
  const grids = [{ h: 200, w: 272 }, { h: 100, w: 136 }, { h: 50, w: 68 }, { h: 25, w: 34 }, { h: 13, w: 17 }];
  assert.equal(levelStrides(800, 1088, grids), [{ h: 4, w: 4 }, { h: 8, w: 8 }, { h: 16, w: 16 }, { h: 32, w: 32 }, { h: 61, w: 64 }]);
});
sizes('normalisation table rounds each op to float32 like torch', () => {
  const t = normalizationTable(MEAN, STD);
  const f = Math.fround;
  assert.is(t[255], f(f(f(255 / 255) - f(0.485)) / f(0.229)));
  assert.is(t[256 + 0], f(f(0 - f(0.456)) / f(0.224)));
});
sizes('degenerate sizes are refused with the reason', () => {
  assert.throws(() => resizePlan(0, 10), /empty/);
  assert.throws(() => resizePlan(1, 5000, 800, 1333), /aspect ratio is too extreme/);
});

/** The input rows output row y samples, as tests/reference/preprocess.ts computes them. */
function sampledRows(plan: ResizePlan, y: number): [number, number] {
  if (plan.inH === plan.outH) return [y, y];
  const src = Math.max(Math.fround(Math.fround(plan.inH / plan.outH) * (y + 0.5) - 0.5), 0);
  const i0 = Math.min(Math.floor(src), plan.inH - 1);
  return [i0, i0 + (i0 < plan.inH - 1 ? 1 : 0)];
}

sizes('bands cover every output row once, hold the rows each samples, and stay under the limit', () => {
  for (const [h, w, minSize, maxSize] of [[10000, 10000, 800, 1333], [10000, 10000, 320, 512], [4000, 300, 800, 1333], [37, 53, 64, 100], [64, 96, 64, 96], [300, 200, 96, 150]]) {
    const plan = resizePlan(h, w, minSize, maxSize);
    const rowBytes = 3 * w;
    assert.equal(preprocessBands(plan, 3 * h * w + 4), [{ rowStart: 0, rows: plan.paddedH, byteStart: 0, byteEnd: Math.ceil((3 * h * w) / 4) * 4 }], `${h}x${w} fits in one band`);
    for (const limit of [128 * 2 ** 20, 5 * rowBytes, 8 * rowBytes + 7, Math.ceil((h * rowBytes) / 3)]) {
      if (limit >= h * rowBytes) continue;
      const bands = preprocessBands(plan, limit);
      assert.ok(bands.length > 1, `${h}x${w} under ${limit}: ${bands.length} bands`);
      let next = 0;
      for (const b of bands) {
        assert.is(b.rowStart, next, 'contiguous');
        next += b.rows;
        assert.ok(b.byteStart % 4 === 0 && b.byteEnd % 4 === 0 && b.byteEnd - b.byteStart <= limit, `window [${b.byteStart}, ${b.byteEnd}) under ${limit}`);
        for (let y = b.rowStart; y < Math.min(b.rowStart + b.rows, plan.outH); y++) {
          const [i0, i1] = sampledRows(plan, y);
          assert.ok(i0 * rowBytes >= b.byteStart && (i1 + 1) * rowBytes <= b.byteEnd + 3, `row ${y} samples rows ${i0}..${i1}, inside [${b.byteStart}, ${b.byteEnd})`);
        }
      }
      assert.is(next, plan.paddedH, 'every padded row');
    }
  }
  // 10000x10000 (300 MB) under a 128 MiB binding: 3 bands.
  assert.is(preprocessBands(resizePlan(10000, 10000), 128 * 2 ** 20).length, 3);
  assert.throws(() => preprocessBands(resizePlan(2000, 2000), 3 * 2000 * 2), /needs \d+ bytes of input rows for one output row, over the 12000-byte storage binding limit/);
});
sizes.run();

const gpu = gpuSuite('preprocess kernel');
for (const [h, w, minSize, maxSize] of [
  [37, 53, 64, 100], // upscale, odd sizes, padded width
  [150, 200, 256, 400],
  [240, 160, 256, 400], // portrait
  [97, 131, 256, 400],
  [300, 200, 96, 150], // downscale
  [64, 96, 64, 96], // same size: index copy
]) {
  gpu.test(`${h}x${w} with min ${minSize} / max ${maxSize}`, async (ctx) => {
    const r = rng(h * 1000 + w);
    const rgb = new Uint8Array(h * w * 3).map(() => Math.floor(r() * 256));
    const plan = resizePlan(h, w, minSize, maxSize);
    const rec = new Recorder(ctx, 'preprocess-test');
    let got: Float32Array;
    try {
      const { image, output } = recordPreprocess(rec, plan, rec.input('table', normalizationTable(MEAN, STD)));
      assert.equal(output.shape, [3, plan.paddedH, plan.paddedW], 'output shape');
      image.write(rgb, 3);
      rec.submit();
      got = await ctx.readF32(output.buffer, 3 * plan.paddedH * plan.paddedW);
    } finally {
      rec.destroy();
    }
    assertClose(got, preprocessRef(rgb, plan, MEAN, STD), resample, `preprocess ${h}x${w} -> ${plan.outH}x${plan.outW} (padded ${plan.paddedH}x${plan.paddedW})`);
  });
}

/** Preprocesses through recordPreprocess's ImageInput (bands under `limit`) and reads the output back. */
async function banded(ctx: Parameters<Parameters<typeof gpu.test>[1]>[0], plan: ResizePlan, data: Uint8Array | Uint8ClampedArray, channels: 3 | 4, limit?: number): Promise<{ out: Float32Array; bands: number }> {
  const rec = new Recorder(ctx, 'preprocess-banded');
  try {
    const table = rec.input('table', normalizationTable(MEAN, STD));
    const { image, output } = recordPreprocess(rec, plan, table, { maxBandBytes: limit });
    image.write(data, channels);
    rec.submit();
    const got = await ctx.readF32(output.buffer, 3 * plan.paddedH * plan.paddedW);
    return { out: got, bands: image.bands.length };
  } finally {
    rec.destroy();
  }
}

for (const [h, w, minSize, maxSize] of [
  [301, 203, 96, 150], // downscale, rows of 609 bytes (not a multiple of 4)
  [37, 53, 64, 100], // upscale
  [64, 96, 64, 96], // same size
  [700, 90, 256, 400], // tall
]) {
  gpu.test(`${h}x${w} in bands of a few rows (RGB and RGBA) equals one pass bit for bit`, async (ctx) => {
    const r = rng(h + w);
    const rgb = new Uint8Array(h * w * 3).map(() => Math.floor(r() * 256));
    const rgba = new Uint8ClampedArray(h * w * 4);
    for (let i = 0; i < h * w; i++) rgba.set([rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], Math.floor(r() * 256)], 4 * i);
    const plan = resizePlan(h, w, minSize, maxSize);
    const whole = await banded(ctx, plan, rgb, 3);
    assert.is(whole.bands, 1);
    assertClose(whole.out, preprocessRef(rgb, plan, MEAN, STD), resample, `one pass ${h}x${w}`);
    for (const limit of [6 * 3 * w + 4, 20 * 3 * w]) {
      const split = await banded(ctx, plan, rgb, 3, limit);
      assert.ok(split.bands > 2, `${split.bands} bands under ${limit} bytes`);
      assertClose(split.out, whole.out, exact, `${split.bands} RGB bands`);
      const alpha = await banded(ctx, plan, rgba, 4, limit);
      assertClose(alpha.out, whole.out, exact, `${alpha.bands} RGBA bands`);
    }
  });
}
gpu.run();
