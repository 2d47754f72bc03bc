// Preprocessing (normalise, bilinear resize with the current torchvision size rule, pad to /32)
// and the anchor generator, against references and torchvision's documented values.

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { normalizationTable, packRgb, planPreprocess, resizePlan } from '../engine/kernels/preprocess.ts';
import { submitDispatches } from '../engine/kernels/dispatch.ts';
import { cellAnchors, levelStrides } from '../engine/maskrcnn/anchors.ts';
import { gpuSuite } from './harness.ts';
import { rng } from './random.ts';
import { preprocessRef } from './reference/preprocess.ts';
import { assertClose, resample } from './tolerance.ts';

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
    const out = ctx.createBuffer('out', 3 * plan.paddedH * plan.paddedW * 4);
    submitDispatches(ctx, [
      planPreprocess(ctx, plan, { rgb: ctx.upload('rgb', packRgb(rgb)), table: ctx.upload('table', normalizationTable(MEAN, STD)), output: out }),
    ]);
    const got = await ctx.readF32(out, 3 * plan.paddedH * plan.paddedW);
    assertClose(got, preprocessRef(rgb, plan, MEAN, STD), resample, `preprocess ${h}x${w} -> ${plan.outH}x${plan.outW} (padded ${plan.paddedH}x${plan.paddedW})`);
  });
}
gpu.run();
