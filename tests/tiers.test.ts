// Kernel tiers (engine/tiers.ts): under the library's default 'tiered' setting a first plan takes
// quick-to-compile stand-ins for the tuned conv and matmul kernels, the tuned ones are compiled on
// a second device and the next plan uses them. Every tier gives bit-identical detections (each
// output sums its terms in the same order), checked on the golden cases. The kernel record
// (io/kernelCache.ts) carries "compiled" across processes, and `maskgpu segment` hands its
// stand-ins' tuned kernels to a detached `maskgpu compile-kernels` process.

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN } from '../engine/maskrcnn/model.ts';
import { compileKernels, QUICK_CONV_TILE } from '../engine/tiers.ts';
import { adapterKey, readCompiledKernels, recordCompiledKernels, runCompileJob, startBackgroundCompile, useCompiledKernels } from '../io/kernelCache.ts';
import { goldenCase, goldenWeightBytes } from './golden.ts';

const test = suite('kernel tiers');
const tmp = mkdtempSync(join(tmpdir(), 'maskgpu-tiers-'));

async function context(tiers: 'tiered' | 'tuned' | 'quick'): Promise<GpuContext> {
  const ctx = await GpuContext.create();
  ctx.setKernelTiers(tiers);
  return ctx;
}

test('tiered: the first plan takes quick stand-ins, and its detections equal the tuned and the quick plans bit for bit', async () => {
  const cases = [0, 1, 2].map(goldenCase);
  const results: Record<string, unknown[]> = {};
  for (const tiers of ['tuned', 'quick', 'tiered'] as const) {
    const ctx = await context(tiers);
    const model = await loadMaskRCNN(ctx, goldenWeightBytes());
    model.backgroundCompile = false;
    const plan = await model.prepare(cases[0].image.height, cases[0].image.width);
    assert.is(plan.quickStandIns, tiers === 'tiered', `${tiers}: stand-ins in the plan`);
    const wanted = ctx.wantedKernels();
    if (tiers === 'tiered') {
      assert.ok(wanted.length > 0, 'tuned kernels wait for a compile');
      for (const w of wanted) assert.is.not(w.spec.consts?.DYNAMIC_EPILOGUE, true, `${w.spec.label}: a wanted kernel is a tuned one`);
      // The stand-ins read their epilogue from uniforms: one conv variant per kernel shape.
      const convs = ctx.kernelSpecs().filter((k) => k.consts?.DYNAMIC_EPILOGUE === true);
      assert.ok(convs.every((k) => k.consts?.TM === QUICK_CONV_TILE.tm));
      assert.is(new Set(convs.map((k) => `${k.consts?.KH}x${k.consts?.KW}/${k.consts?.SHUFFLE}/${k.consts?.PADDED}`)).size, convs.length, 'no two stand-ins differ only in their epilogue');
    } else assert.is(wanted.length, 0, `${tiers}: nothing waits`);
    results[tiers] = [];
    for (const c of cases) results[tiers].push((await model.segment(c.image)).detections);
    model.destroy();
    ctx.device.destroy();
  }
  assert.ok((results.tuned[0] as unknown[]).length > 0, 'the golden case has detections');
  assert.equal(results.quick, results.tuned, 'quick = tuned');
  assert.equal(results.tiered, results.tuned, 'tiered = tuned');
});

test('compileTunedKernels compiles the wanted kernels on a second device; the next run rebuilds its plan on them with the same detections', async () => {
  const ctx = await context('tiered');
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  model.backgroundCompile = false;
  const { image } = goldenCase(0);
  const first = await model.segment(image);
  const wanted = ctx.wantedKernels().length;
  const memory = ctx.memory;
  const compile = model.compileTunedKernels();
  assert.is(model.compileTunedKernels(), compile, 'a compile under way is shared');
  const report = await compile;
  assert.equal([report.compiled, report.where], [wanted, 'second device']);
  assert.equal(ctx.memory, memory, 'the compile allocated nothing on the model device');
  assert.is(ctx.wantedKernels().length, 0);
  assert.is((await model.prepare(image.height, image.width)).quickStandIns, false, 'the plan was rebuilt on the tuned kernels');
  assert.equal((await model.segment(image)).detections, first.detections);
  assert.is((await model.compileTunedKernels()).compiled, 0, 'nothing left to compile');
  model.destroy();
  ctx.device.destroy();
});

test('by default the model compiles the tuned kernels in the background after a run with stand-ins', async () => {
  const ctx = await context('tiered');
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  const { image } = goldenCase(1);
  const first = await model.segment(image);
  const inFlight = model.compileTunedKernels();
  assert.is(model.compileTunedKernels(), inFlight);
  const report = await inFlight;
  // Either this call joined the background compile or it had already finished (then nothing was left).
  assert.ok(report.compiled > 0 || ctx.wantedKernels().length === 0);
  assert.is(ctx.wantedKernels().length, 0);
  assert.equal((await model.segment(image)).detections, first.detections);
  assert.is((await model.prepare(image.height, image.width)).quickStandIns, false);
  model.destroy();
  ctx.device.destroy();
});

test('without a second device (fromDevice) nothing compiles in the background; compileTunedKernels then uses the same device', async () => {
  const owner = await GpuContext.create();
  const ctx = GpuContext.fromDevice(owner.device);
  assert.is(ctx.acquireAnother, undefined);
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  const { image } = goldenCase(2);
  const first = await model.segment(image);
  const wanted = ctx.wantedKernels().length;
  assert.ok(wanted > 0, 'stand-ins stay');
  const report = await model.compileTunedKernels();
  assert.equal([report.compiled, report.where], [wanted, 'same device']);
  assert.equal((await model.segment(image)).detections, first.detections);
  model.destroy();
  owner.device.destroy();
});

test('compileKernels frees its scratch buffers; setKernelTiers and addCompiledKernels refuse nonsense', async () => {
  const ctx = await context('tuned');
  const before = ctx.memory;
  const specs = ctx.kernelSpecs();
  assert.is(specs.length, 0);
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  await model.prepare(64, 64);
  const kernels = ctx.kernelSpecs();
  model.destroy();
  await compileKernels(ctx, kernels);
  assert.equal([ctx.memory.buffers, ctx.memory.bytes], [before.buffers, before.bytes]);
  assert.throws(() => ctx.setKernelTiers('fast' as 'quick'), /'fast' is not 'tiered', 'tuned' or 'quick'/);
  assert.throws(() => ctx.addCompiledKernels([42 as unknown as string]), /keys are strings/);
  ctx.device.destroy();
});

test('the kernel record: a key recorded is taken as compiled by a new context; other adapters are kept; a broken file is ignored', async () => {
  const file = join(tmp, 'record.json');
  const a = await context('tiered');
  const model = await loadMaskRCNN(a, goldenWeightBytes());
  model.backgroundCompile = false;
  await model.prepare(150, 200);
  const wanted = a.wantedKernels();
  assert.ok(wanted.length > 0);
  const other = { ...a.report, description: 'some other driver' };
  assert.is(recordCompiledKernels(other, ['x'], file), 1, 'another adapter');
  assert.is(recordCompiledKernels(a.report, wanted.map((w) => w.key), file), wanted.length);
  assert.is(recordCompiledKernels(a.report, wanted.map((w) => w.key), file), 0, 'nothing new');
  model.destroy();
  a.device.destroy();

  const b = await context('tiered');
  assert.is(useCompiledKernels(b, file), wanted.length);
  const again = await loadMaskRCNN(b, goldenWeightBytes());
  again.backgroundCompile = false;
  assert.is((await again.prepare(150, 200)).quickStandIns, false, 'the record makes the plan tuned at once');
  assert.equal(readCompiledKernels(other, file), ['x'], 'the other adapter kept its entry');
  writeFileSync(file, '{"version": 7}');
  assert.equal(readCompiledKernels(b.report, file), [], 'a broken record reads as empty');
  again.destroy();
  b.device.destroy();
});

test('a compile job for another adapter is refused, naming both', async () => {
  const ctx = await context('tuned');
  const job = join(tmp, 'job.json');
  writeFileSync(job, JSON.stringify({ version: 1, adapter: 'a | b | c', kernels: [] }));
  await runCompileJob(ctx, job, join(tmp, 'unused.json')).then(
    () => assert.unreachable('must refuse'),
    (e: Error) => assert.ok(e.message.includes(`written for the adapter 'a | b | c', this one is '${adapterKey(ctx.report)}'`), e.message),
  );
  assert.ok(existsSync(job), 'a refused job is left alone');
  assert.is(startBackgroundCompile(ctx, { file: join(tmp, 'unused.json') }), undefined, 'nothing wanted: no process');
  ctx.device.destroy();
});

test('maskgpu segment: stand-ins first, a detached compile records the tuned kernels, the next run is tuned; every tier writes the same detections', async () => {
  const env = { ...process.env, MASKGPU_CACHE_DIR: join(tmp, 'cli-cache') };
  const path = 'tests/fixtures/golden/image_0.png';
  const segment = (out: string, ...extra: string[]) => {
    const r = spawnSync(process.execPath, ['bin/maskgpu.mjs', 'segment', path, '--weights', 'tests/fixtures/golden/model.safetensors', '--out', join(tmp, out), '--verbose', ...extra], { encoding: 'utf8', env });
    assert.is(r.status, 0, r.stderr);
    return r;
  };
  const detections = (out: string) => JSON.parse(readFileSync(join(tmp, out, 'image_0.json'), 'utf8')).detections;
  const first = segment('first');
  assert.match(first.stdout, /kernels: quick stand-ins/);
  const m = /compiling (\d+) tuned kernels in the background for the next runs \(pid (\d+), log ([^;]+);/.exec(first.stderr);
  assert.ok(m, `the background compile is announced: ${first.stderr}`);
  const pid = Number(m![2]);
  for (let i = 0; i < 3000; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(readFileSync(m![3], 'utf8'), new RegExp(`compiled ${m![1]} kernels in`));
  const second = segment('second');
  assert.match(second.stdout, /kernels: tuned/);
  assert.not.match(second.stderr, /in the background/, 'nothing left to compile');
  const quick = segment('quick', '--kernels', 'quick', '--no-background-compile');
  assert.match(quick.stdout, /kernels: quick, /, 'quick plans have no stand-ins: quick is the choice');
  assert.equal(detections('first'), detections('second'));
  assert.equal(detections('quick'), detections('second'));
  const none = segment('none', '--kernels', 'tiered', '--no-background-compile', '--force');
  assert.not.match(none.stderr, /in the background/);
  // A cache folder that cannot be written: the images are still written, with a warning.
  const blocker = join(tmp, 'not-a-folder');
  writeFileSync(blocker, 'x');
  const r = spawnSync(process.execPath, ['bin/maskgpu.mjs', 'segment', path, '--weights', 'tests/fixtures/golden/model.safetensors', '--out', join(tmp, 'blocked')], {
    encoding: 'utf8',
    env: { ...process.env, MASKGPU_CACHE_DIR: join(blocker, 'cache') },
  });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /could not record the compiled kernels or start the background compile/);
  assert.equal(detections('blocked'), detections('second'));
});

test.run();
