// Per-stage timings (engine/maskrcnn/stages.ts): with GPU timestamps every stage is timed in the
// same single submit; without them { profile: true } times stage-by-stage submits on the CPU and
// the default reports none. Splitting the plan into passes or submits must not change a single
// detection. Only the shape and consistency of the numbers are checked, never their size.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { GpuContext } from '../engine/gpu.ts';
import type { Dispatch } from '../engine/kernels/dispatch.ts';
import { loadMaskRCNN, type SegmentResult } from '../engine/maskrcnn/model.ts';
import { STAGES, stagesFromTimestamps, sumStages, timestampGranularityNs, TIMESTAMP_COUNT } from '../engine/maskrcnn/stages.ts';
import { Recorder } from '../engine/recorder.ts';
import { goldenCase, goldenWeightBytes } from './golden.ts';
import { gpuSuite } from './harness.ts';

function assertStages(r: SegmentResult, source: 'gpu-timestamps' | 'cpu'): void {
  assert.is(r.stagesSource, source);
  const s = r.stagesMs;
  assert.ok(s, 'stagesMs is set');
  assert.equal(Object.keys(s).sort(), [...STAGES].sort(), 'exactly the seven stages');
  for (const k of STAGES) assert.ok(Number.isFinite(s[k]) && s[k] >= 0, `${k}: ${s[k]} ms is a non-negative number`);
  assert.ok(sumStages(s) <= r.timingsMs.total, `stages sum ${sumStages(s).toFixed(2)} ms <= total ${r.timingsMs.total.toFixed(2)} ms`);
  assert.ok(sumStages(s) > 0, 'some stage took time');
}

const gpu = gpuSuite('Mask R-CNN stage timings');

gpu.test('GPU timestamps time all seven stages in the single submit; profiling changes nothing', async (ctx) => {
  if (!ctx.device.features.has('timestamp-query')) {
    console.log('    (this adapter has no timestamp-query: only the CPU path below is tested)');
    return;
  }
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  const image = goldenCase(0).image;
  const plain = await model.segment(image);
  assertStages(plain, 'gpu-timestamps');
  assert.ok(sumStages(plain.stagesMs!) <= plain.timingsMs.gpu, 'GPU stage time fits in the submit-to-mapped wall time');
  const profiled = await model.segment(image, { profile: true });
  assertStages(profiled, 'gpu-timestamps');
  assert.equal(profiled.detections, plain.detections);
  const s = plain.stagesMs!;
  console.log(`    ${STAGES.map((k) => `${k} ${s[k].toFixed(1)}`).join(', ')} ms; timestamp grid ${timestampGranularityNs(s)} ns`);
  model.destroy();
});

gpu.test('without timestamp-query: no stages by default, CPU stages with profile, same detections', async (ctx) => {
  const plainCtx = await GpuContext.create({ disableFeatures: ['timestamp-query'] });
  plainCtx.setKernelTiers('tuned');
  try {
    assert.not.ok(plainCtx.device.features.has('timestamp-query'));
    const baseline = plainCtx.memory.buffers; // the context's own (its unused-binding placeholder)
    const image = goldenCase(0).image;
    const model = await loadMaskRCNN(plainCtx, goldenWeightBytes());
    const plain = await model.segment(image);
    assert.is(plain.stagesMs, null);
    assert.is(plain.stagesSource, null);
    const profiled = await model.segment(image, { profile: true });
    assertStages(profiled, 'cpu');
    assert.equal(profiled.detections, plain.detections, 'stage-by-stage submits give the one-submit detections');
    model.destroy();
    assert.is(plainCtx.memory.buffers, baseline, 'destroy() frees the model');

    // The one-pass path (no timestamps) and the pass-per-stage path agree on another device too.
    const withTimestamps = await loadMaskRCNN(ctx, goldenWeightBytes());
    assert.equal((await withTimestamps.segment(image)).detections, plain.detections, 'one pass vs a pass per stage');
    withTimestamps.destroy();
  } finally {
    plainCtx.destroy();
    plainCtx.device.destroy();
  }
});

const cpu = suite('stage bookkeeping');

cpu('the recorder splits its dispatches by stage and refuses a missing, repeated or out-of-order stage', () => {
  const list = Array.from({ length: 10 }, (_, i) => ({ label: `d${i}` }) as unknown as Dispatch);
  const ctx = {} as GpuContext; // stage bookkeeping never touches the device
  const rec = new Recorder(ctx, 'stages');
  const at = [0, 1, 4, 5, 5, 7, 9]; // rpn empty: a stage may have no dispatch
  STAGES.forEach((s, i) => {
    while (rec.dispatches.length < at[i]) rec.record(list[rec.dispatches.length]);
    rec.stage(s);
  });
  rec.record(...list.slice(rec.dispatches.length));
  assert.equal(rec.stages(STAGES).map((d) => d.length), [1, 3, 1, 0, 2, 2, 1]);
  assert.equal(rec.stages(STAGES).flat(), list, 'every dispatch once, in order');
  assert.throws(() => rec.stage('fpn'), /marked twice/);

  const partial = new Recorder(ctx, 'partial');
  partial.stage('preprocess');
  assert.throws(() => partial.stages(STAGES), /stage 'backbone' was never marked/);
  const swapped = new Recorder(ctx, 'swapped');
  swapped.stage('backbone');
  swapped.record(list[0]);
  swapped.stage('preprocess');
  assert.throws(() => swapped.stages(['preprocess', 'backbone']), /out of order/);
});

cpu('timestamps: durations in ms, null unless monotone, the quantisation grid detected', () => {
  const ts = new BigUint64Array(TIMESTAMP_COUNT);
  for (let i = 0; i < TIMESTAMP_COUNT; i++) ts[i] = 1_000_000_000n + BigInt(i) * 1_500_000n + BigInt(i % 2) * 3n;
  const s = stagesFromTimestamps(ts)!;
  assert.ok(Math.abs(s.preprocess - 1.500003) < 1e-9, `preprocess ${s.preprocess}`);
  assert.is(timestampGranularityNs(s), 1);
  const quantised = ts.map((t) => (t >> 16n) << 16n);
  assert.is(timestampGranularityNs(stagesFromTimestamps(quantised)!), 65536);
  const swapped = ts.slice();
  [swapped[2], swapped[3]] = [swapped[3], swapped[2]];
  assert.is(stagesFromTimestamps(swapped), null, 'a stage ending before it begins');
  const reordered = ts.slice();
  reordered[4] = reordered[2] - 1n; // the FPN pass begins before the backbone pass
  assert.is(stagesFromTimestamps(reordered), null, 'a stage beginning before the previous one');
  const overlapping = ts.slice();
  overlapping[3] = overlapping[4] + 5n; // backbone ends after the FPN began: allowed
  assert.ok(stagesFromTimestamps(overlapping), 'overlapping passes are still a profile');
  assert.is(stagesFromTimestamps(new BigUint64Array(TIMESTAMP_COUNT)), null, 'all zeros (never written)');
});

gpu.run();
cpu.run();
