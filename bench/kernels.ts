// Kernel benchmark: conv2d on every distinct ResNet-50 conv shape of an 800x1088 input (and the
// detector's other 3x3s: FPN/RPN outputs on P2..P5, the mask head on 100 RoIs), next to
// the best plain matmul the same adapter reaches in the same run (tile sweep at 1024^3 over the
// same register/workgroup tiles the conv tuner tries). Every configuration is validated before it
// is timed: matmul and conv2d against their float64 references (conv: spot checks of sampled
// outputs of the real full-size layer). Each conv runs with the tile its class gets on this adapter
// (the tuned cache, applied with io/tiles.ts's useCachedConvTiling, or the built-in defaults);
// `--sweep` tunes first (bench/tune.ts), uses the result and caches it.
//
// The "% of matmul" column divides by the best matmul timed again in the same rounds as that conv
// (conv, matmul, conv, matmul, ...), so load drift on a shared machine hits both alike.
// Every 3x3 stride-1 layer is also timed as Winograd F(2,3) and F(4,3) (engine/kernels/winograd.ts)
// in the same rounds, after validation against its error bound: direct-equivalent GFLOP/s (the
// direct conv's FLOPs over Winograd's time) and the speed-up over the direct path.
// `--baseline DIR` also times the conv of another checkout (e.g. a `git worktree` of the previous
// commit, with its own default tile; its Conv2d may have the recording API or the older plan API)
// in the same rounds: before and after, side by side.
//
//   npm run bench:kernels [-- --height 800 --width 1088 --repeats 3 --filter 3x3 --matmul 1024
//                           --sweep --clock wall|cpu --precision f32|f16 --baseline DIR --json out.json]

import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { Conv2d, type ConvPrecision } from '../engine/kernels/conv2d.ts';
import { convClass, DIRECT_FALLBACK_TILE, tileName, type ConvTile } from '../engine/kernels/convTiling.ts';
import type { Dispatch } from '../engine/kernels/dispatch.ts';
import { recordMatmul, type MatmulTile } from '../engine/kernels/matmul.ts';
import type { Tensor } from '../engine/planner.ts';
import { Recorder } from '../engine/recorder.ts';
import { useCachedConvTiling, writeConvTilingCache } from '../io/tiles.ts';
import { normal, rng } from '../tests/random.ts';
import { conv2dRefAt } from '../tests/reference/conv2d.ts';
import { matmulRef } from '../tests/reference/dense.ts';
import { checkWinograd, compare, f32Accum, type Tolerance } from '../tests/tolerance.ts';
import { median } from './timing.ts';
import { CANDIDATE_TILES, type Clock, convMacs, sampleMs, tuneConvTiling } from './tune.ts';
import { parseScriptArgs } from '../io/args.ts';

const ARGS = {
  command: 'npm run bench:kernels --',
  usage: `usage: npm run bench:kernels [-- --height 800 --width 1088 --repeats 3 --filter 3x3 --matmul 1024
                                --sweep --no-save --clock wall|cpu --precision f32|f16 --baseline DIR --json out.json]
  (see the header of bench/kernels.ts)`,
  options: {
    height: { type: 'number', integer: true, min: 1, default: 800 },
    width: { type: 'number', integer: true, min: 1, default: 1088 },
    repeats: { type: 'number', integer: true, min: 1, default: 3 },
    filter: { type: 'string', default: '.' },
    matmul: { type: 'number', integer: true, min: 1, default: 1024 },
    sweep: { type: 'boolean' },
    'no-save': { type: 'boolean' },
    clock: { type: 'string', choices: ['wall', 'cpu'], default: 'wall' },
    precision: { type: 'string', choices: ['f32', 'f16'], default: 'f32' },
    baseline: { type: 'string', default: '' },
    json: { type: 'string', default: '' },
  },
} as const;

interface ConvShape {
  layer: string;
  cin: number;
  cout: number;
  k: number;
  stride: number;
  h: number;
  w: number;
  /** Inputs in the batch (the mask head's RoIs); default 1. */
  batch?: number;
}

/** Distinct conv shapes of ResNet-50 (torchvision v1.5: stride on the 3x3) for a padded input. */
export function resnet50ConvShapes(height: number, width: number): ConvShape[] {
  const out: ConvShape[] = [{ layer: 'conv1 7x7/2', cin: 3, cout: 64, k: 7, stride: 2, h: height, w: width }];
  let h = Math.floor((height + 6 - 7) / 2) + 1;
  let w = Math.floor((width + 6 - 7) / 2) + 1;
  h = Math.floor((h + 2 - 3) / 2) + 1; // maxpool 3x3/2
  w = Math.floor((w + 2 - 3) / 2) + 1;
  let cin = 64;
  [64, 128, 256, 512].forEach((width_, i) => {
    const L = `layer${i + 1}`;
    const s = i === 0 ? 1 : 2;
    const cout = width_ * 4;
    out.push({ layer: `${L}.0.conv1 1x1`, cin, cout: width_, k: 1, stride: 1, h, w });
    out.push({ layer: `${L}.0.conv2 3x3/${s}`, cin: width_, cout: width_, k: 3, stride: s, h, w });
    out.push({ layer: `${L}.0.downsample 1x1/${s}`, cin, cout, k: 1, stride: s, h, w });
    h = Math.floor((h - 1) / s) + 1;
    w = Math.floor((w - 1) / s) + 1;
    out.push({ layer: `${L}.0.conv3 1x1`, cin: width_, cout, k: 1, stride: 1, h, w });
    out.push({ layer: `${L}.N.conv1 1x1`, cin: cout, cout: width_, k: 1, stride: 1, h, w });
    if (s !== 1) out.push({ layer: `${L}.N.conv2 3x3`, cin: width_, cout: width_, k: 3, stride: 1, h, w });
    cin = cout;
  });
  return out;
}

/**
 * The detector's other 3x3 stride-1 convs: the FPN outputs (the RPN head's conv has the same
 * shapes) on P2..P5 and the mask head on 100 RoIs of 14x14.
 */
export function detectorConvShapes(height: number, width: number): ConvShape[] {
  const out: ConvShape[] = [];
  let [h, w] = [Math.ceil(height / 4), Math.ceil(width / 4)];
  for (let level = 2; level <= 5; level++) {
    out.push({ layer: `fpn/rpn 3x3 P${level}`, cin: 256, cout: 256, k: 3, stride: 1, h, w });
    [h, w] = [Math.ceil(h / 2), Math.ceil(w / 2)];
  }
  out.push({ layer: 'mask head 3x3 (100 RoIs)', cin: 256, cout: 256, k: 3, stride: 1, h: 14, w: 14, batch: 100 });
  return out;
}

async function validateMatmul(ctx: GpuContext, tile: MatmulTile): Promise<void> {
  const [m, n, k] = [37, 45, 29];
  const a = normal(1, m * k);
  const b = normal(2, k * n);
  const rec = new Recorder(ctx, `validate matmul ${tileName(tile)}`);
  const out = recordMatmul(rec, { tile }, { m, n, k }, { a: rec.input('a', a, [m, k]), b: rec.input('b', b, [k, n]), c: rec.output('c', [m, n]) });
  rec.submit();
  const c = compare(await ctx.readF32(out.buffer, m * n), matmulRef(m, n, k, a, b), f32Accum, `matmul ${JSON.stringify(tile)}`);
  rec.destroy();
  if (!c.ok) throw new Error(`validation failed, not timing: ${c.report}`);
}

/** Median ms of `repeats` submits of each run (every dispatch its recorder holds) after one warm-up, the runs interleaved. */
async function timeInterleaved(runs: Recorder[], repeats: number, clock: Clock, cores: number): Promise<number[]> {
  for (const r of runs) await sampleMs(r, r.dispatches, clock, cores);
  const samples = runs.map(() => [] as number[]);
  for (let i = 0; i < repeats; i++) for (const [k, r] of runs.entries()) samples[k].push(await sampleMs(r, r.dispatches, clock, cores));
  return samples.map(median);
}

type Size = { batch: number; h: number; w: number };
/** Conv2d of another checkout: the recording API (as here) or the plan API before it. */
interface BaselineConv {
  outputShape(s: Size): Size;
  record?(rec: Recorder, x: Tensor, opts: { output?: Tensor }): Tensor;
  plan?(s: Size, b: { input: GPUBuffer; output: GPUBuffer }): Dispatch;
  destroy(): void;
}
type BaselineConvClass = new (ctx: GpuContext, spec: object, w: Float32Array, b: Float32Array, label: string) => BaselineConv;

/** f16 weights round each weight to 11 significant bits: about 5e-4 relative per product. */
const f16Weights: Tolerance = { name: 'f16Weights', abs: 5e-3, rel: 5e-3 };

async function main(): Promise<void> {
  const { values: opt } = parseScriptArgs(ARGS);
  const height = opt.height;
  const width = opt.width;
  const repeats = opt.repeats;
  const jsonOut = opt.json;
  const clock: Clock = opt.clock;
  const precision: ConvPrecision = opt.precision;
  const cores = (await import('node:os')).availableParallelism();
  const ctx = await GpuContext.create();
  ctx.setKernelTiers('tuned'); // timed runs use the tuned kernels from the first run on (bench:coldstart measures the tiers)
  const cached = useCachedConvTiling(ctx);
  console.log(`adapter: ${describeAdapter(ctx.report)}; ${clock} clock${clock === 'cpu' ? ` (process CPU time / ${cores} cores)` : ''}`);
  console.log(`conv tiles: ${cached ? `tuned, from ${cached}` : 'built-in defaults (no tuned cache for this adapter: npm run tune)'}`);

  if (opt.sweep) {
    console.log('\nconv tile sweep (bench/tune.ts):');
    const tuned = await tuneConvTiling(ctx, { clock, rounds: Math.max(2, Math.min(repeats, 5)) });
    ctx.setConvTiling(tuned.tiling);
    if (!opt['no-save']) {
      const file = writeConvTilingCache(ctx.report, { tiling: tuned.tiling, adapter: describeAdapter(ctx.report), measured: new Date().toISOString() });
      console.log(`saved to ${file}`);
    }
  }
  const tiling = ctx.convTiling;
  const baselineDir = opt.baseline;
  const Baseline: BaselineConvClass | undefined = baselineDir ? (await import(resolve(baselineDir, 'engine/kernels/conv2d.ts'))).Conv2d : undefined;

  // ---- ceiling: best plain matmul ----------------------------------------------------------
  const N = opt.matmul;
  const operands = new Recorder(ctx, 'matmul operands');
  const a = operands.input('a', normal(3, N * N), [N, N]);
  const b = operands.input('b', normal(4, N * N), [N, N]);
  const c = operands.output('c', [N, N]);
  const matmulRun = (tile: MatmulTile): Recorder => {
    const rec = new Recorder(ctx, `matmul ${tileName(tile)}`);
    recordMatmul(rec, { tile }, { m: N, n: N, k: N }, { a, b, c });
    return rec;
  };
  // The conv tuner's candidates plus the earlier matmul sweep's 2-D tiles: the ceiling gets
  // at least every tile the convs may use.
  const tiles: MatmulTile[] = [...CANDIDATE_TILES, { tm: 4, tn: 8, wgX: 8, wgY: 2 }, { tm: 8, tn: 4, wgX: 4, wgY: 4 }, { tm: 4, tn: 4, wgX: 16, wgY: 16 }];
  let best = { gflops: 0, tile: tiles[0] };
  console.log(`\nmatmul ${N}x${N}x${N} tile sweep (median of ${repeats}):`);
  for (const tile of tiles) {
    await validateMatmul(ctx, tile);
    const run = matmulRun(tile);
    const [ms] = await timeInterleaved([run], repeats, clock, cores);
    run.destroy();
    const gflops = (2 * N ** 3) / ms / 1e6;
    console.log(`  TM=${tile.tm} TN=${tile.tn} WG=${tile.wgX}x${tile.wgY}: ${ms.toFixed(1)} ms, ${gflops.toFixed(2)} GFLOP/s`);
    if (gflops > best.gflops) best = { gflops, tile };
  }
  const bestMatmul = matmulRun(best.tile);

  // ---- conv2d on the ResNet-50 shapes, then the detector's other 3x3s ---------------------------
  type WinogradRow = { m: 2 | 4; tile: string; ms: number; gflops: number; speedup: number; boundUsed: number };
  const rows: Array<ConvShape & { macs: number; ms: number; gflops: number; matmulGflops: number; pct: number; worst: number; tile: string; baselineMs?: number; winograd: WinogradRow[] }> = [];
  const filter = new RegExp(opt.filter);
  for (const s of [...resnet50ConvShapes(height, width), ...detectorConvShapes(height, width)].filter((x) => filter.test(x.layer))) {
    const pad = (s.k - 1) >> 1;
    const batch = s.batch ?? 1;
    const fanIn = s.cin * s.k * s.k;
    const weight = normal(10, s.cout * fanIn, Math.sqrt(2 / fanIn));
    const bias = normal(11, s.cout, 0.1);
    const input = normal(12, batch * s.cin * s.h * s.w);
    const spec = { cin: s.cin, cout: s.cout, kernel: [s.k, s.k] as [number, number], stride: [s.stride, s.stride] as [number, number], padding: [pad, pad] as [number, number], relu: true, precision };
    const shape = { batch, h: s.h, w: s.w };
    const probe = new Conv2d(ctx, spec, weight, bias, s.layer);
    const classTile = probe.tileFor(shape);
    probe.destroy();
    // The direct path with the class's tile (its direct fallback when the class runs Winograd).
    const directTile = classTile.winograd ? DIRECT_FALLBACK_TILE : classTile;
    const conv = new Conv2d(ctx, { ...spec, tile: directTile }, weight, bias, s.layer);
    const out = conv.outputShape(shape);
    const count = batch * s.cout * out.h * out.w;
    const rec = new Recorder(ctx, s.layer);
    const x = rec.input('x', input, [batch, s.cin, s.h, s.w]);
    const y = conv.record(rec, x, { output: rec.output('y', [batch, s.cout, out.h, out.w]) });
    const cls = convClass(s.cin, s.k, s.k, batch * out.h * out.w, [s.stride, s.stride]);

    // Validate: 256 sampled outputs (corners included) of the full-size layer.
    rec.submit();
    const got = await ctx.readF32(y.buffer, count);
    const r = rng(13);
    const idx = [0, got.length - 1, ...Array.from({ length: 254 }, () => Math.floor(r() * got.length))];
    const args = { batch, cin: s.cin, h: s.h, w: s.w, cout: s.cout, kh: s.k, kw: s.k, stride: spec.stride, padding: spec.padding, relu: true };
    const at = (i: number): [number, number, number, number] => {
      const plane = out.h * out.w;
      const rem = i % plane;
      return [Math.floor(i / (s.cout * plane)), Math.floor(i / plane) % s.cout, Math.floor(rem / out.w), rem % out.w];
    };
    const want = idx.map((i) => conv2dRefAt(args, input, weight, bias, undefined, ...at(i)));
    const check = compare(idx.map((i) => got[i]), want, precision === 'f16' ? f16Weights : f32Accum, s.layer);
    if (!check.ok) throw new Error(`validation failed, not timing: ${check.report}`);

    // Winograd F(2,3) and F(4,3) where the layer qualifies (the class's tile when it is one), each
    // validated against its error bound (tests/tolerance.ts) on the same samples.
    const winograd: Array<{ m: 2 | 4; tile: ConvTile; conv: Conv2d; rec: Recorder; boundUsed: number }> = [];
    if (s.k === 3 && s.stride === 1 && precision === 'f32') {
      const abs = { input: input.map(Math.abs), weight: weight.map(Math.abs), bias: bias.map(Math.abs) };
      const scale = idx.map((i) => conv2dRefAt({ ...args, relu: false }, abs.input, abs.weight, abs.bias, undefined, ...at(i)));
      for (const m of [2, 4] as const) {
        const tile: ConvTile = classTile.winograd === m ? classTile : { tm: 16, tn: 8, wgX: 32, wgY: 1, winograd: m };
        const wconv = new Conv2d(ctx, { ...spec, tile }, weight, bias, `${s.layer} F(${m},3)`);
        const wrec = new Recorder(ctx, `${s.layer} F(${m},3)`);
        const wy = wconv.record(wrec, wrec.input('x', input, [batch, s.cin, s.h, s.w]), { output: wrec.output('y', [batch, s.cout, out.h, out.w]) });
        wrec.submit();
        const wgot = await ctx.readF32(wy.buffer, count);
        const boundUsed = checkWinograd(idx.map((i) => wgot[i]), want, scale, m, s.cin, `${s.layer} F(${m},3)`);
        winograd.push({ m, tile, conv: wconv, rec: wrec, boundUsed });
      }
    }

    // The baseline is timed as it comes (its own default tile), after the same validation.
    const base = Baseline && batch === 1 ? new Baseline(ctx, { cin: s.cin, cout: s.cout, kernel: [s.k, s.k], stride: [s.stride, s.stride], padding: [pad, pad], relu: true }, weight, bias, `baseline ${s.layer}`) : undefined;
    const baseRec = base ? new Recorder(ctx, `baseline ${s.layer}`) : undefined;
    if (base && baseRec) {
      // It writes the same output tensor, read back and checked the same way.
      if (base.record) base.record(baseRec, x, { output: y });
      else if (base.plan) baseRec.record(base.plan(shape, { input: x.buffer, output: y.buffer }));
      else throw new Error(`${baselineDir}: its Conv2d has neither record() nor plan()`);
      baseRec.submit();
      const b = await ctx.readF32(y.buffer, count);
      const c = compare(idx.map((i) => b[i]), want, f32Accum, `baseline ${s.layer}`);
      if (!c.ok) throw new Error(`baseline validation failed, not timing: ${c.report}`);
    }
    const timed = await timeInterleaved([rec, bestMatmul, ...(baseRec ? [baseRec] : []), ...winograd.map((w) => w.rec)], repeats, clock, cores);
    const [ms, matmulMs] = timed;
    const baselineMs = baseRec ? timed[2] : undefined;
    const winoMs = timed.slice(baseRec ? 3 : 2);
    const macs = convMacs(conv, shape);
    const gflops = (2 * macs) / ms / 1e6;
    const matmulGflops = (2 * N ** 3) / matmulMs / 1e6;
    const pct = (100 * gflops) / matmulGflops;
    const winoRows: WinogradRow[] = winograd.map((w, i) => ({ m: w.m, tile: tileName(w.tile), ms: winoMs[i], gflops: (2 * macs) / winoMs[i] / 1e6, speedup: ms / winoMs[i], boundUsed: w.boundUsed }));
    rows.push({ ...s, macs, ms, gflops, matmulGflops, pct, worst: check.worstAbs, tile: `${cls} ${tileName(directTile)}`, baselineMs, winograd: winoRows });
    console.log(
      `  ${s.layer} (${cls} ${tileName(directTile)}): ${ms.toFixed(1)} ms, ${gflops.toFixed(2)} GFLOP/s, ${pct.toFixed(0)}% of matmul (${matmulGflops.toFixed(2)} in the same rounds)` +
        (baselineMs ? `; baseline ${baselineMs.toFixed(1)} ms (${(baselineMs / ms).toFixed(2)}x)` : '') +
        winoRows.map((w) => `; F(${w.m},3) ${w.tile}: ${w.ms.toFixed(1)} ms = ${w.gflops.toFixed(2)} direct-equivalent GFLOP/s (${w.speedup.toFixed(2)}x, ${(w.boundUsed * 100).toFixed(1)} % of its error bound)`).join(''),
    );
    for (const w of winograd) {
      w.rec.destroy();
      w.conv.destroy();
    }
    baseRec?.destroy();
    base?.destroy();
    rec.destroy();
    conv.destroy();
  }

  bestMatmul.destroy();
  operands.destroy();
  const minPct = (xs: typeof rows) => (xs.length ? `${Math.min(...xs.map((r) => r.pct)).toFixed(0)}%` : '-');
  const totalMs = rows.reduce((s, r) => s + r.ms, 0);
  const totalMacs = rows.reduce((s, r) => s + r.macs, 0);
  console.log(`\n### conv2d on ResNet-50 shapes, input ${height}x${width}`);
  console.log(`adapter: ${describeAdapter(ctx.report)}`);
  console.log(
    `ceiling: best matmul ${N}^3 in the sweep = **${best.gflops.toFixed(2)} GFLOP/s** (TM=${best.tile.tm} TN=${best.tile.tn} WG=${best.tile.wgX}x${best.tile.wgY}), ` +
      `timed again in each conv's rounds; ${precision} weights; median of ${repeats} after warm-up, ${clock} clock\n`,
  );
  const baseCols = Baseline ? ' baseline ms | speed-up |' : '';
  console.log(`| layer | Cin→Cout | in H×W | GMAC | tile (class, TM×TN/WG) | ms | GFLOP/s | matmul GFLOP/s | % of matmul |${baseCols} worst abs err (256 samples) | F(2,3) ms (GFLOP/s eq., ×) | F(4,3) ms (GFLOP/s eq., ×) |`);
  console.log(`|---|---|---|---:|---|---:|---:|---:|---:|${Baseline ? '---:|---:|' : ''}---:|---:|---:|`);
  for (const r of rows) {
    const base = r.baselineMs ? ` ${r.baselineMs.toFixed(1)} | ${(r.baselineMs / r.ms).toFixed(2)}× |` : '';
    const wino = (m: number) => {
      const w = r.winograd.find((x) => x.m === m);
      return w ? `${w.ms.toFixed(1)} (${w.gflops.toFixed(1)}, ${w.speedup.toFixed(2)}×)` : '—';
    };
    console.log(
      `| ${r.layer} | ${r.cin}→${r.cout} | ${r.batch ? `${r.batch}× ` : ''}${r.h}×${r.w} | ${(r.macs / 1e9).toFixed(3)} | ${r.tile} | ${r.ms.toFixed(1)} | ${r.gflops.toFixed(2)} | ${r.matmulGflops.toFixed(2)} | ${r.pct.toFixed(0)}% |${base} ${r.worst.toExponential(1)} | ${wino(2)} | ${wino(4)} |`,
    );
  }
  const by = (k: number) => rows.filter((r) => r.k === k);
  console.log(
    winogradSummary(rows) +
      `\nall distinct shapes: ${(totalMacs / 1e9).toFixed(2)} GMAC in ${totalMs.toFixed(0)} ms = ${((2 * totalMacs) / totalMs / 1e6).toFixed(2)} GFLOP/s; ` +
      `worst % of matmul: 3x3 ${minPct(by(3))}, 1x1 ${minPct(by(1))}, stem ${minPct(by(7))}, all ${minPct(rows)}` +
      (Baseline ? `; baseline ${rows.reduce((t, r) => t + (r.baselineMs ?? 0), 0).toFixed(0)} ms in total` : ''),
  );
  if (jsonOut) {
    writeFileSync(jsonOut, JSON.stringify({ adapter: ctx.report, height, width, clock, precision, matmul: best, tiling, rows }, null, 2));
  }
  ctx.destroy();
}

/** The 3x3 stride-1 layers together: direct vs each Winograd size (ms summed over the shapes). */
function winogradSummary(rows: Array<{ ms: number; winograd: Array<{ m: number; ms: number }> }>): string {
  const eligible = rows.filter((r) => r.winograd.length);
  if (!eligible.length) return '';
  const direct = eligible.reduce((t, r) => t + r.ms, 0);
  const parts = [2, 4].map((m) => {
    const ms = eligible.reduce((t, r) => t + (r.winograd.find((w) => w.m === m)?.ms ?? r.ms), 0);
    return `F(${m},3) ${ms.toFixed(0)} ms (${(direct / ms).toFixed(2)}x)`;
  });
  return `\n3x3 stride-1 layers (${eligible.length} shapes): direct ${direct.toFixed(0)} ms, ${parts.join(', ')}`;
}

await main();
process.exit(0);
