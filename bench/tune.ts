// Conv tile tuner: for each conv class (engine/kernels/convTiling.ts) it times every candidate
// tile on representative ResNet-50 shapes of an 800x1088 input, after validating each candidate
// against the float64 reference, and caches the fastest per class for this adapter
// (io/tiles.ts: MASKGPU_CACHE_DIR or ~/.cache/maskgpu/tiles.json). The library never reads that file
// on its own: the CLI and the benchmarks apply it with useCachedConvTiling(ctx) (ctx.setConvTiling).
// Candidates are timed in interleaved rounds (every candidate once per round) and scored by their
// best round, so a load spike from other processes hits all candidates alike. `--clock cpu` times
// by the process's CPU time instead of wall time: on a CPU adapter (lavapipe runs the shaders on
// this process's threads) it is the stable measure while other jobs share the cores. The 3x3
// stride-1 classes also try Winograd F(2,3) and F(4,3) (WINOGRAD_CANDIDATES), validated against
// their stated error bound: the fastest path and tile per class wins.
//
//   npm run tune [-- --rounds 3 --clock wall|cpu --class spatial-large --no-save --json out.json]

import { writeFileSync } from 'node:fs';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { Conv2d } from '../engine/kernels/conv2d.ts';
import { CONV_CLASSES, convClass, DEFAULT_CONV_TILING, tileName, type ConvClass, type ConvTile, type ConvTiling } from '../engine/kernels/convTiling.ts';
import type { Dispatch } from '../engine/kernels/dispatch.ts';
import type { Tensor } from '../engine/planner.ts';
import { Recorder } from '../engine/recorder.ts';
import { readConvTilingCache, writeConvTilingCache } from '../io/tiles.ts';
import { normal, rng } from '../tests/random.ts';
import { conv2dRefAt } from '../tests/reference/conv2d.ts';
import { checkWinograd, compare, f32Accum } from '../tests/tolerance.ts';
import { parseScriptArgs } from '../io/args.ts';
import { submitList } from './timing.ts';

export interface TuneShape {
  layer: string;
  cin: number;
  cout: number;
  k: number;
  stride: number;
  h: number;
  w: number;
}

/** Tiles worth trying: uniform-weight (wgY = 1) tiles of several sizes, plus the former 2-D default. */
export const CANDIDATE_TILES: ConvTile[] = [
  { tm: 16, tn: 8, wgX: 8, wgY: 1 },
  { tm: 16, tn: 8, wgX: 32, wgY: 1 },
  { tm: 8, tn: 8, wgX: 8, wgY: 1 },
  { tm: 8, tn: 8, wgX: 32, wgY: 1 },
  { tm: 16, tn: 4, wgX: 16, wgY: 1 },
  { tm: 32, tn: 4, wgX: 8, wgY: 1 },
  { tm: 8, tn: 4, wgX: 64, wgY: 1 },
  { tm: 8, tn: 8, wgX: 4, wgY: 4 },
];

/**
 * Winograd candidates for the 3x3 stride-1 classes (engine/kernels/winograd.ts): F(2,3) and
 * F(4,3), each with batched-GEMM tiles of the uniform-weight kind; tried beside the direct tiles.
 */
export const WINOGRAD_CANDIDATES: ConvTile[] = [
  { tm: 16, tn: 8, wgX: 32, wgY: 1, winograd: 2 },
  { tm: 16, tn: 8, wgX: 32, wgY: 1, winograd: 4 },
  { tm: 8, tn: 8, wgX: 32, wgY: 1, winograd: 4 },
  { tm: 32, tn: 4, wgX: 8, wgY: 1, winograd: 4 },
];

/** The candidates of a class: the direct tiles, and for the Winograd classes the Winograd ones too. */
export function candidatesFor(cls: ConvClass, tiles: ConvTile[] = CANDIDATE_TILES): ConvTile[] {
  return cls.startsWith('winograd-') ? [...tiles, ...WINOGRAD_CANDIDATES] : tiles;
}

/** Per class, layers of ResNet-50 on an 800x1088 input (stem on a quarter of it, to keep tuning short). */
export const TUNE_SHAPES: TuneShape[] = [
  { layer: 'conv1 7x7/2 (400x544 crop)', cin: 3, cout: 64, k: 7, stride: 2, h: 400, w: 544 },
  { layer: 'layer1.0.conv1 1x1', cin: 64, cout: 64, k: 1, stride: 1, h: 200, w: 272 },
  { layer: 'layer2.N.conv1 1x1', cin: 512, cout: 128, k: 1, stride: 1, h: 100, w: 136 },
  { layer: 'layer3.0.downsample 1x1/2', cin: 512, cout: 1024, k: 1, stride: 2, h: 100, w: 136 },
  { layer: 'layer3.N.conv1 1x1', cin: 1024, cout: 256, k: 1, stride: 1, h: 50, w: 68 },
  { layer: 'layer4.0.conv3 1x1', cin: 512, cout: 2048, k: 1, stride: 1, h: 25, w: 34 },
  { layer: 'layer2.0.conv2 3x3/2', cin: 128, cout: 128, k: 3, stride: 2, h: 200, w: 272 },
  { layer: 'layer3.0.conv2 3x3/2', cin: 256, cout: 256, k: 3, stride: 2, h: 100, w: 136 },
  { layer: 'layer1.0.conv2 3x3', cin: 64, cout: 64, k: 3, stride: 1, h: 200, w: 272 },
  { layer: 'layer2.N.conv2 3x3', cin: 128, cout: 128, k: 3, stride: 1, h: 100, w: 136 },
  { layer: 'layer3.N.conv2 3x3', cin: 256, cout: 256, k: 3, stride: 1, h: 50, w: 68 },
  { layer: 'layer4.N.conv2 3x3', cin: 512, cout: 512, k: 3, stride: 1, h: 25, w: 34 },
];

export function shapeClass(s: TuneShape): ConvClass {
  const pad = (s.k - 1) >> 1;
  const oh = Math.floor((s.h + 2 * pad - s.k) / s.stride) + 1;
  const ow = Math.floor((s.w + 2 * pad - s.k) / s.stride) + 1;
  return convClass(s.cin, s.k, s.k, oh * ow, [s.stride, s.stride]);
}

/**
 * MACs of `conv` on one input of `input`'s size, counted as prune/report.ts counts a conv layer:
 * (times each weight is used = output pixels) x (weights = Cout x Cin x KH x KW).
 */
export function convMacs(conv: Conv2d, input: { batch: number; h: number; w: number }): number {
  const o = conv.outputShape(input);
  const { cout, cin, kernel } = conv.spec;
  return o.batch * o.h * o.w * cout * cin * kernel[0] * kernel[1];
}

export type Clock = 'wall' | 'cpu';

/** Milliseconds of one submit of `d` (recorded into `rec`; CPU clock: process CPU time / cores, i.e. wall time if alone). */
export async function sampleMs(rec: Recorder, d: readonly Dispatch[], clock: Clock, cores: number): Promise<number> {
  const ctx = rec.ctx;
  await ctx.device.queue.onSubmittedWorkDone();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  submitList(rec, d);
  await ctx.device.queue.onSubmittedWorkDone();
  if (clock === 'wall') return performance.now() - t0;
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / cores;
}

interface Prepared {
  conv: Conv2d;
  /** Holds the conv's one dispatch and its output. */
  rec: Recorder;
}

/** A conv of shape `s` with `tile`, validated on 64 sampled outputs before it may be timed. */
async function prepare(ctx: GpuContext, s: TuneShape, tile: ConvTile, data: { input: Float32Array; weight: Float32Array; bias: Float32Array }, x: Tensor): Promise<Prepared> {
  const pad = (s.k - 1) >> 1;
  const conv = new Conv2d(ctx, { cin: s.cin, cout: s.cout, kernel: [s.k, s.k], stride: [s.stride, s.stride], padding: [pad, pad], relu: true, tile }, data.weight, data.bias, s.layer);
  const shape = { batch: 1, h: s.h, w: s.w };
  const out = conv.outputShape(shape);
  const count = s.cout * out.h * out.w;
  const rec = new Recorder(ctx, `tune ${s.layer} ${tileName(tile)}`);
  const y = conv.record(rec, x, { output: rec.output('y', [s.cout, out.h, out.w]) });
  rec.submit();
  const r = rng(7);
  const idx = [0, count - 1, ...Array.from({ length: 62 }, () => Math.floor(r() * count))];
  const got = await ctx.readF32(y.buffer, count);
  const args = { batch: 1, cin: s.cin, h: s.h, w: s.w, cout: s.cout, kh: s.k, kw: s.k, stride: [s.stride, s.stride] as [number, number], padding: [pad, pad] as [number, number], relu: true };
  const want = idx.map((i) => {
    const o = Math.floor(i / (out.h * out.w));
    const rem = i % (out.h * out.w);
    return conv2dRefAt(args, data.input, data.weight, data.bias, undefined, 0, o, Math.floor(rem / out.w), rem % out.w);
  });
  const what = `${s.layer} tile ${JSON.stringify(tile)}`;
  try {
    if (tile.winograd) {
      // Winograd rounds differently: held to its stated bound (tests/tolerance.ts) per sample.
      const abs = { input: data.input.map(Math.abs), weight: data.weight.map(Math.abs), bias: data.bias.map(Math.abs) };
      const scale = idx.map((i) => {
        const o = Math.floor(i / (out.h * out.w));
        const rem = i % (out.h * out.w);
        return conv2dRefAt({ ...args, relu: false }, abs.input, abs.weight, abs.bias, undefined, 0, o, Math.floor(rem / out.w), rem % out.w);
      });
      checkWinograd(idx.map((i) => got[i]), want, scale, tile.winograd, s.cin, what);
    } else {
      const check = compare(idx.map((i) => got[i]), want, f32Accum, what);
      if (!check.ok) throw new Error(check.report);
    }
  } catch (e) {
    rec.destroy();
    conv.destroy();
    throw new Error(`validation failed, not timing: ${(e as Error).message}`);
  }
  return { conv, rec };
}

export interface TuneResult {
  tiling: ConvTiling;
  /** Per class: ms of each candidate summed over the class's shapes (best round each). */
  table: Record<string, Array<{ tile: ConvTile; ms: number; gflops: number }>>;
}

export async function tuneConvTiling(
  ctx: GpuContext,
  opts: { rounds?: number; clock?: Clock; classes?: readonly ConvClass[]; tiles?: ConvTile[]; shapes?: TuneShape[]; log?: (s: string) => void } = {},
): Promise<TuneResult> {
  const { rounds = 3, clock = 'wall', classes = CONV_CLASSES, tiles: candidates = CANDIDATE_TILES, shapes = TUNE_SHAPES, log = console.log } = opts;
  const cores = (await import('node:os')).availableParallelism();
  const tiling: ConvTiling = {};
  const table: TuneResult['table'] = {};
  for (const cls of classes) {
    const members = shapes.filter((s) => shapeClass(s) === cls);
    if (!members.length) continue;
    const tiles = candidatesFor(cls, candidates);
    // ms[shape][tile]: best round.
    const best = members.map(() => tiles.map(() => Infinity));
    const flops = members.map(() => 0);
    for (const [si, s] of members.entries()) {
      const fanIn = s.cin * s.k * s.k;
      const data = { input: normal(12, s.cin * s.h * s.w), weight: normal(10, s.cout * fanIn, Math.sqrt(2 / fanIn)), bias: normal(11, s.cout, 0.1) };
      const inputs = new Recorder(ctx, 'tune inputs');
      const x = inputs.input('x', data.input, [s.cin, s.h, s.w]);
      const prepared: Prepared[] = [];
      for (const tile of tiles) prepared.push(await prepare(ctx, s, tile, data, x));
      flops[si] = 2 * convMacs(prepared[0].conv, { batch: 1, h: s.h, w: s.w });
      for (const p of prepared) await sampleMs(p.rec, p.rec.dispatches, clock, cores); // warm-up
      for (let r = 0; r < rounds; r++) {
        for (const [ti, p] of prepared.entries()) best[si][ti] = Math.min(best[si][ti], await sampleMs(p.rec, p.rec.dispatches, clock, cores));
      }
      log(`  ${cls} | ${s.layer}: ${tiles.map((t, ti) => `${tileName(t)} ${((flops[si] / best[si][ti]) * 1e-6).toFixed(1)}`).join(', ')} GFLOP/s`);
      for (const p of prepared) {
        p.rec.destroy();
        p.conv.destroy();
      }
      inputs.destroy();
    }
    const totalFlops = flops.reduce((a, b) => a + b, 0);
    const rows = tiles.map((tile, ti) => {
      const ms = members.reduce((sum, _, si) => sum + best[si][ti], 0);
      return { tile, ms, gflops: (totalFlops / ms) * 1e-6 };
    });
    rows.sort((a, b) => a.ms - b.ms);
    table[cls] = rows;
    tiling[cls] = rows[0].tile;
    const dflt = rows.find((r) => sameTile(r.tile, DEFAULT_CONV_TILING[cls]));
    log(`${cls}: best ${tileName(rows[0].tile)} ${rows[0].gflops.toFixed(2)} GFLOP/s${dflt ? `, built-in default ${tileName(dflt.tile)} ${dflt.gflops.toFixed(2)}` : ''}`);
  }
  return { tiling, table };
}

function sameTile(a: ConvTile, b: ConvTile): boolean {
  return a.tm === b.tm && a.tn === b.tn && a.wgX === b.wgX && a.wgY === b.wgY && a.winograd === b.winograd;
}

async function main(): Promise<void> {
  const { values: opt } = parseScriptArgs({
    command: 'npm run tune --',
    usage: `usage: npm run tune [-- --rounds 3 --clock wall|cpu --class CLASS --no-save --json out.json]
  --class: one of ${CONV_CLASSES.join(', ')} (default: all); --no-save: do not write the tile cache`,
    options: {
      rounds: { type: 'number', integer: true, min: 1, default: 3 },
      clock: { type: 'string', choices: ['wall', 'cpu'], default: 'wall' },
      class: { type: 'string', choices: CONV_CLASSES },
      'no-save': { type: 'boolean' },
      json: { type: 'string' },
    },
  });
  const rounds = opt.rounds;
  const clock: Clock = opt.clock;
  const only = opt.class;
  const ctx = await GpuContext.create();
  ctx.setKernelTiers('tuned'); // timed runs use the tuned kernels from the first run on (bench:coldstart measures the tiers)
  console.log(`adapter: ${describeAdapter(ctx.report)}; ${rounds} interleaved rounds, ${clock} clock`);
  const t0 = performance.now();
  const result = await tuneConvTiling(ctx, { rounds, clock, classes: only ? [only as ConvClass] : CONV_CLASSES });
  console.log(`tuned in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (!opt['no-save']) {
    const evidence = Object.fromEntries(Object.entries(result.table).map(([cls, rows]) => [cls, rows.map((r) => ({ tile: tileName(r.tile), gflops: Number(r.gflops.toFixed(2)) }))]));
    // One class re-tuned keeps the other classes' entries.
    const before = only ? readConvTilingCache(ctx.report) : undefined;
    const tiling = { ...(before?.tiling ?? {}), ...result.tiling };
    const file = writeConvTilingCache(ctx.report, { tiling, adapter: describeAdapter(ctx.report), measured: new Date().toISOString(), evidence: { ...(before?.evidence ?? {}), clock, rounds, ...evidence } });
    console.log(`saved to ${file}`);
  }
  const json = opt.json;
  if (json) writeFileSync(json, JSON.stringify({ adapter: ctx.report, clock, rounds, ...result }, null, 2));
  ctx.destroy();
}

if (process.argv[1]?.endsWith('tune.ts')) {
  await main();
  process.exit(0);
}
