// What per-stage timing costs on the default path: the same model and image on two devices of
// the same adapter, one with 'timestamp-query' (a compute pass per stage, timestamps resolved
// and read back with the result) and one without (the single pass the engine recorded before
// stage timing existed). Runs alternate A, B, A, B... so that a load change hits both; medians.
// Wall times on a shared CPU adapter are noisy, so it also reads the raw timestamps of the
// per-stage run and sums the gaps between one pass's end and the next one's beginning: the GPU
// time the pass boundaries themselves cost, which no load can fake.
//
//   node --import ./tools/register.mjs bench/stage-overhead.ts [--repeats 15] [--warmup 2]
//        [--weights models/maskgpu-shapes.safetensors] [--image models/samples/shapes_2.png]

import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN, type MaskRCNN } from '../engine/maskrcnn/model.ts';
import { readImageFile } from '../io/image.ts';
import { parseScriptArgs } from '../io/args.ts';
import { BUNDLED_MODEL, BUNDLED_SAMPLES } from '../io/bundled.ts';
import { sameDetections } from './match.ts';
import { median } from './timing.ts';
import { STAGES, TIMESTAMP_BYTES } from '../engine/maskrcnn/stages.ts';
import { useCachedConvTiling } from '../io/tiles.ts';

/** The model's resolved timestamps of its last run (a private field: this is a measurement hook). */
async function lastTimestamps(ctx: GpuContext, model: MaskRCNN): Promise<BigUint64Array> {
  const ts = (model as unknown as { timestamps?: { resolve: GPUBuffer } }).timestamps;
  if (!ts) throw new Error('the model has no timestamp query set');
  return new BigUint64Array(await ctx.read(ts.resolve, TIMESTAMP_BYTES));
}

const { values: opt } = parseScriptArgs({
  command: 'bench/stage-overhead.ts',
  usage: `usage: node --import ./tools/register.mjs bench/stage-overhead.ts [--repeats 15] [--warmup 2]
       [--weights models/maskgpu-shapes.safetensors] [--image models/samples/shapes_2.png]   (see its header)`,
  options: {
    repeats: { type: 'number', integer: true, min: 1, default: 15 },
    warmup: { type: 'number', integer: true, min: 0, default: 2 },
    weights: { type: 'string', default: BUNDLED_MODEL },
    image: { type: 'string', default: join(BUNDLED_SAMPLES, 'shapes_2.png') },
  },
});
const repeats = opt.repeats;
const warmup = opt.warmup;
const bytes = new Uint8Array(readFileSync(opt.weights));
const image = await readImageFile(opt.image);

// Nanosecond timestamps (Dawn quantises them to 65.5 us by default); the same flags for both.
const dawnFlags = ['disable-dawn-features=timestamp_quantization'];
const withTs = await GpuContext.create({ dawnFlags });
useCachedConvTiling(withTs); // the tuned conv tiles, as the CLI uses them
if (!withTs.device.features.has('timestamp-query')) throw new Error('this adapter has no timestamp-query: there is no per-stage pass path to compare');
const without = await GpuContext.create({ dawnFlags, disableFeatures: ['timestamp-query'] });
for (const c of [withTs, without]) c.setKernelTiers('tuned'); // timed runs use the tuned kernels (bench:coldstart measures the tiers)
useCachedConvTiling(without); // the tuned conv tiles, as the CLI uses them
console.log(`adapter: ${describeAdapter(withTs.report)}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
const models: Array<[string, MaskRCNN]> = [
  ['pass per stage + timestamps', await loadMaskRCNN(withTs, bytes)],
  ['one pass, no timestamps', await loadMaskRCNN(without, bytes)],
];
const first = await Promise.all(models.map(([, m]) => m.segment(image)));
const problem = sameDetections(first[0].detections, first[1].detections);
if (problem) throw new Error(`the two paths disagree (${problem}); not timing`);
for (let i = 0; i < warmup; i++) for (const [, m] of models) await m.segment(image);
const samples = models.map(() => ({ gpu: [] as number[], total: [] as number[] }));
const gapsMs: number[] = [];
const spansMs: number[] = [];
for (let i = 0; i < repeats; i++) {
  for (const [j, [, m]] of models.entries()) {
    const r = await m.segment(image);
    samples[j].gpu.push(r.timingsMs.gpu);
    samples[j].total.push(r.timingsMs.total);
    if (j === 0) {
      const ts = await lastTimestamps(withTs, m);
      let gap = 0n;
      for (let s = 1; s < STAGES.length; s++) gap += ts[2 * s] - ts[2 * s - 1];
      gapsMs.push(Number(gap) / 1e6);
      spansMs.push(Number(ts[2 * STAGES.length - 1] - ts[0]) / 1e6);
    }
  }
}
for (const [j, [name]] of models.entries()) {
  const s = samples[j];
  console.log(`${name.padEnd(28)} gpu median ${median(s.gpu).toFixed(1)} ms (min ${Math.min(...s.gpu).toFixed(1)}), total median ${median(s.total).toFixed(1)} ms, n=${repeats}`);
}
const ratio = median(samples[0].gpu) / median(samples[1].gpu);
console.log(`per-stage passes / one pass (gpu medians): ${ratio.toFixed(3)}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log(
  `GPU time between passes (${STAGES.length - 1} boundaries): median ${median(gapsMs).toFixed(3)} ms, max ${Math.max(...gapsMs).toFixed(3)} ms, ` +
    `of a first-to-last timestamp span of median ${median(spansMs).toFixed(1)} ms (${((100 * median(gapsMs)) / median(spansMs)).toFixed(3)} %)`,
);
for (const [, m] of models) m.destroy();
withTs.device.destroy();
without.device.destroy();
