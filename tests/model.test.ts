// The Mask R-CNN model object: plan once and run many (no new buffers for a second image of the
// same size), destroy() frees everything, concurrent calls equal sequential ones, and bad input
// gets a clear error.

import * as assert from 'uvu/assert';
import { loadMaskRCNN } from '../engine/maskrcnn/model.ts';
import { goldenCase, goldenWeightBytes } from './golden.ts';
import { gpuSuite } from './harness.ts';

const test = gpuSuite('Mask R-CNN model');

test.test('a second image of the same size allocates nothing; destroy() frees every buffer', async (ctx) => {
  const baseline = ctx.memory;
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  const g = goldenCase(0);
  const first = await model.segment(g.image);
  const afterFirst = ctx.memory;
  const flipped = { ...g.image, data: g.image.data.slice().reverse() }; // same size, other pixels
  const second = await model.segment(flipped);
  const afterSecond = ctx.memory;
  assert.is(afterSecond.buffers, afterFirst.buffers, 'live buffers after the second image');
  assert.is(afterSecond.bytes, afterFirst.bytes, 'live bytes after the second image');
  assert.ok(second.timingsMs.plan < first.timingsMs.plan, 'the second call reuses the plan');
  console.log(`    plan ${first.timingsMs.plan.toFixed(1)} ms then ${second.timingsMs.plan.toFixed(2)} ms; ${afterFirst.buffers} buffers, ${(afterFirst.bytes / 2 ** 20).toFixed(1)} MiB`);
  model.destroy();
  assert.equal([ctx.memory.buffers, ctx.memory.bytes], [baseline.buffers, baseline.bytes], 'destroy() returns to the baseline');
  await model.segment(g.image).then(
    () => assert.unreachable('a destroyed model must refuse to run'),
    (e: Error) => assert.match(e.message, /destroyed/),
  );
});

test.test('plans are cached per size, least recently used first out', async (ctx) => {
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  model.maxCachedPlans = 1;
  const a = goldenCase(0).image;
  const b = goldenCase(1).image;
  await model.segment(a);
  const withA = ctx.memory.buffers;
  const first = await model.segment(b);
  await model.segment(a);
  assert.is(ctx.memory.buffers, withA, 'one plan alive at a time');
  model.maxCachedPlans = 0; // still keeps the plan it builds for the call
  assert.equal((await model.segment(b)).detections, first.detections);
  await model.segment(a);
  assert.is(ctx.memory.buffers, withA);
  model.destroy();
});

test.test('two segment() calls in flight give the sequential results', async (ctx) => {
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  const a = goldenCase(0).image;
  const b = goldenCase(2).image;
  const seqA = await model.segment(a);
  const seqB = await model.segment(b);
  const [parA, parB] = await Promise.all([model.segment(a), model.segment(b)]);
  assert.equal(parA.detections, seqA.detections);
  assert.equal(parB.detections, seqB.detections);
  model.destroy();
});

test.test('bad images are refused with the reason, and the model keeps working', async (ctx) => {
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  const bad = [
    [{ width: 0, height: 5, data: new Uint8Array(0) }, /not a positive integer size/],
    [{ width: 4, height: 4, data: new Uint8Array(10) }, /needs 48/],
    [{ width: 1, height: 5000, data: new Uint8Array(15000) }, /aspect ratio is too extreme/],
  ] as const;
  for (const [image, message] of bad) {
    await model.segment(image).then(
      () => assert.unreachable(`should refuse ${image.width}x${image.height}`),
      (e: Error) => assert.match(e.message, message),
    );
  }
  const ok = await model.segment(goldenCase(2).image);
  assert.ok(ok.detections.length > 0);
  model.destroy();
});

test.test('RGBA input (canvas ImageData) gives the RGB result', async (ctx) => {
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  const g = goldenCase(2).image;
  const rgba = new Uint8ClampedArray(g.width * g.height * 4);
  for (let i = 0; i < g.width * g.height; i++) {
    rgba.set(g.data.subarray(i * 3, i * 3 + 3), i * 4);
    rgba[i * 4 + 3] = 255;
  }
  const a = await model.segment(g);
  const b = await model.segment({ width: g.width, height: g.height, data: rgba });
  assert.equal(b.detections, a.detections);
  model.destroy();
});

test.run();
