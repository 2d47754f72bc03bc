// Preprocessing, ResNet-50 body and FPN against torchvision's tensors on the golden model.

import * as assert from 'uvu/assert';
import { submitDispatches, type Dispatch } from '../engine/kernels/dispatch.ts';
import { normalizationTable, packRgb, planPreprocess, resizePlan } from '../engine/kernels/preprocess.ts';
import { ResNetFpn } from '../engine/maskrcnn/backbone.ts';
import { BufferPool } from '../engine/planner.ts';
import { FEATURE_CASES, goldenCase, goldenWeights } from './golden.ts';
import { gpuSuite } from './harness.ts';
import { assertClose, resample, type Tolerance } from './tolerance.ts';

/**
 * Features after ~50 float32 convs: rounding differences (accumulation order, BN folded into the
 * weights, the resize's FMA) grow layer by layer (measured worst: 3e-5 on values of order 1).
 */
const features: Tolerance = { name: 'features', abs: 2e-4, rel: 1e-3 };

const weights = goldenWeights();
const test = gpuSuite('golden: preprocess + backbone + FPN');
for (const i of FEATURE_CASES) {
  test.test(`image ${i}`, async (ctx) => {
    const g = goldenCase(i);
    const { minSize, maxSize, imageMean, imageStd } = weights.meta;
    const plan = resizePlan(g.image.height, g.image.width, minSize, maxSize);
    assert.equal([plan.outH, plan.outW], g.json.resized, 'resized size');
    assert.equal([plan.paddedH, plan.paddedW], g.json.padded, 'padded size');

    const backbone = new ResNetFpn(ctx, weights);
    const pool = new BufferPool(ctx);
    const out: Dispatch[] = [];
    const input = pool.tensor('input', [3, plan.paddedH, plan.paddedW]);
    out.push(planPreprocess(ctx, plan, { rgb: ctx.upload('rgb', packRgb(g.image.data)), table: ctx.upload('t', normalizationTable(imageMean, imageStd)), output: input.buffer }));
    const { levels } = backbone.plan(pool, { ...input, c: 3, h: plan.paddedH, w: plan.paddedW }, out);
    submitDispatches(ctx, out);

    assertClose(await ctx.readF32(input.buffer, 3 * plan.paddedH * plan.paddedW), g.tensors.get('input')!.data, resample, `${g.name} input`);
    const names = ['fpn.0', 'fpn.1', 'fpn.2', 'fpn.3', 'fpn.pool'];
    for (const [li, level] of levels.entries()) {
      const want = g.tensors.get(names[li])!;
      assert.equal([level.c, level.h, level.w], want.shape.slice(1), `${names[li]} shape`);
      assertClose(await ctx.readF32(level.buffer, level.c * level.h * level.w), want.data, features, `${g.name} ${names[li]}`);
    }
    for (const d of out) d.destroy();
    backbone.destroy();
    pool.destroy();
  });
}
test.run();
