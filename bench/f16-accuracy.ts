// f16 conv weights (loadMaskRCNN option `precision: 'f16'`) against f32 on the bundled model: the
// same images through both, detections paired greedily (same label, highest box IoU >= 0.5, in
// the f32 model's score order), then box IoU, mask IoU and score differences of the pairs, the
// detections only one of them has, and the time per image of each (after a warm-up image that
// compiles the plan).
//
//   node --import ./tools/register.mjs bench/f16-accuracy.ts [--limit 20 --score 0.05 --clock wall|cpu]
//   (images: models/samples/shapes_*.png, then data/shapes/test/images up to --limit)

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readImageFile } from '../io/image.ts';
import { parseScriptArgs } from '../io/args.ts';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN, type MaskRCNN, type RgbImage, type SegmentResult } from '../engine/maskrcnn/model.ts';
import { rleIou } from '../engine/rle.ts';
import { boxIou } from './match.ts';
import { median } from './timing.ts';
import { useCachedConvTiling } from '../io/tiles.ts';

const ARGS = {
  command: 'bench/f16-accuracy.ts',
  usage: `usage: node --import ./tools/register.mjs bench/f16-accuracy.ts [--limit 20] [--score 0.05] [--clock wall|cpu]
  (images: models/samples/shapes_*.png, then data/shapes/test/images up to --limit)`,
  options: {
    limit: { type: 'number', integer: true, min: 0, default: 20 },
    score: { type: 'number', min: 0, max: 1, default: 0.05 },
    clock: { type: 'string', choices: ['wall', 'cpu'], default: 'wall' },
  },
} as const;

interface Pairing {
  pairs: Array<{ boxIou: number; maskIou: number; scoreDiff: number; score: number }>;
  onlyF32: number[];
  onlyF16: number[];
}

function pair(a: SegmentResult, b: SegmentResult): Pairing {
  const used = new Array(b.detections.length).fill(false);
  const out: Pairing = { pairs: [], onlyF32: [], onlyF16: [] };
  for (const d of a.detections) {
    let best = -1;
    let bestIou = 0.5;
    b.detections.forEach((e, j) => {
      if (used[j] || e.label !== d.label) return;
      const iou = boxIou(d.box, e.box);
      if (iou >= bestIou) [best, bestIou] = [j, iou];
    });
    if (best < 0) {
      out.onlyF32.push(d.score);
      continue;
    }
    used[best] = true;
    const e = b.detections[best];
    out.pairs.push({ boxIou: bestIou, maskIou: rleIou(d.mask, e.mask), scoreDiff: Math.abs(d.score - e.score), score: d.score });
  }
  b.detections.forEach((e, j) => used[j] || out.onlyF16.push(e.score));
  return out;
}

async function timed(model: MaskRCNN, img: RgbImage, clock: string, cores: number): Promise<{ result: SegmentResult; ms: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await model.segment(img);
  const c = process.cpuUsage(c0);
  return { result, ms: clock === 'cpu' ? (c.user + c.system) / 1000 / cores : performance.now() - t0 };
}

async function main(): Promise<void> {
  const { values: opt } = parseScriptArgs(ARGS);
  const limit = opt.limit;
  const minScore = opt.score;
  const clock: string = opt.clock;
  const cores = (await import('node:os')).availableParallelism();
  const ctx = await GpuContext.create();
  ctx.setKernelTiers('tuned'); // the tuned kernels, as a warm CLI run uses them (bench:coldstart measures the tiers)
  useCachedConvTiling(ctx); // the tuned conv tiles, as the CLI uses them
  console.log(`adapter: ${describeAdapter(ctx.report)}`);
  const bytes = readFileSync('models/maskgpu-shapes.safetensors');
  const m32 = await loadMaskRCNN(ctx, bytes, { boxScoreThresh: minScore });
  const m16 = await loadMaskRCNN(ctx, bytes, { boxScoreThresh: minScore, precision: 'f16' });

  const files = readdirSync('models/samples').filter((f) => f.endsWith('.png')).map((f) => join('models/samples', f));
  const testDir = 'data/shapes/test/images';
  try {
    files.push(...readdirSync(testDir).sort().map((f) => join(testDir, f)));
  } catch {
    console.log(`(no ${testDir}: samples only)`);
  }
  const images = files.slice(0, limit);
  const all: Pairing = { pairs: [], onlyF32: [], onlyF16: [] };
  const times = { f32: [] as number[], f16: [] as number[] };
  // Warm-up: compile both plans for the first image's size.
  const first = await readImageFile(images[0]);
  await m32.segment(first);
  await m16.segment(first);
  for (const file of images) {
    const img = await readImageFile(file);
    // Alternate the order so neither model always runs on a warmer cache.
    const order = times.f32.length % 2 ? (['f16', 'f32'] as const) : (['f32', 'f16'] as const);
    const res: Partial<Record<'f32' | 'f16', SegmentResult>> = {};
    for (const p of order) {
      const t = await timed(p === 'f32' ? m32 : m16, img, clock, cores);
      res[p] = t.result;
      times[p].push(t.ms);
    }
    const p = pair(res.f32!, res.f16!);
    all.pairs.push(...p.pairs);
    all.onlyF32.push(...p.onlyF32);
    all.onlyF16.push(...p.onlyF16);
  }

  const decisive = all.pairs.filter((p) => p.score >= 0.5);
  const worst = (xs: number[], f: (a: number, b: number) => number) => (xs.length ? xs.reduce((a, b) => f(a, b)) : undefined);
  console.log(`\n${images.length} images, detections with score >= ${minScore}:`);
  console.log(`  paired ${all.pairs.length}; only f32: ${all.onlyF32.length} (max score ${worst(all.onlyF32, Math.max)?.toFixed(3) ?? '-'}); only f16: ${all.onlyF16.length} (max score ${worst(all.onlyF16, Math.max)?.toFixed(3) ?? '-'})`);
  for (const [name, set] of [['all pairs', all.pairs], ['f32 score >= 0.5', decisive]] as const) {
    if (!set.length) continue;
    console.log(
      `  ${name} (${set.length}): box IoU min ${worst(set.map((p) => p.boxIou), Math.min)!.toFixed(5)} / median ${median(set.map((p) => p.boxIou)).toFixed(5)}, ` +
        `mask IoU min ${worst(set.map((p) => p.maskIou), Math.min)!.toFixed(4)} / median ${median(set.map((p) => p.maskIou)).toFixed(4)}, ` +
        `|score diff| max ${worst(set.map((p) => p.scoreDiff), Math.max)!.toExponential(2)} / median ${median(set.map((p) => p.scoreDiff)).toExponential(2)}`,
    );
  }
  console.log(`  time per image (median, ${clock} clock): f32 ${median(times.f32).toFixed(0)} ms, f16 ${median(times.f16).toFixed(0)} ms`);
  m32.destroy();
  m16.destroy();
  ctx.destroy();
}

await main();
process.exit(0);
