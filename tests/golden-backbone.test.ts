// Preprocessing, ResNet-50 body and FPN against torchvision's tensors on the golden model.

import * as assert from 'uvu/assert';
import { normalizationTable, recordPreprocess, resizePlan } from '../engine/kernels/preprocess.ts';
import { ResNetFpn } from '../engine/maskrcnn/backbone.ts';
import { Recorder } from '../engine/recorder.ts';
import { FEATURE_CASES, goldenCase, goldenWeights } from './golden.ts';
import { gpuSuite } from './harness.ts';
import { assertClose, fpnFeatures, resample } from './tolerance.ts';

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
    const rec = new Recorder(ctx, 'golden backbone');
    const { image, output: input } = recordPreprocess(rec, plan, rec.input('t', normalizationTable(imageMean, imageStd)));
    image.write(g.image.data, 3);
    const levels = backbone.recordFpn(rec, backbone.recordBody(rec, input));
    rec.submit();

    assertClose(await ctx.readF32(input.buffer, 3 * plan.paddedH * plan.paddedW), g.tensors.get('input')!.data, resample, `${g.name} input`);
    const names = ['fpn.0', 'fpn.1', 'fpn.2', 'fpn.3', 'fpn.pool'];
    let [worst, used] = [0, 0];
    for (const [li, level] of levels.entries()) {
      const want = g.tensors.get(names[li])!;
      assert.equal(level.shape, want.shape.slice(1), `${names[li]} shape`);
      const c = assertClose(await ctx.readF32(level.buffer, want.data.length), want.data, fpnFeatures, `${g.name} ${names[li]}`);
      [worst, used] = [Math.max(worst, c.worstAbs), Math.max(used, c.worstFraction)];
    }
    console.log(`    ${g.name}: worst FPN |error| ${worst.toExponential(2)}, ${(100 * used).toFixed(0)} % of the ${fpnFeatures.name} tolerance used`);
    rec.destroy();
    backbone.destroy();
  });
}
test.run();
