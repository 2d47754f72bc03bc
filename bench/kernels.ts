// Kernel benchmark: conv2d on every distinct ResNet-50 conv shape of an 800x1088 input, next to
// the best plain matmul the same adapter reaches in the same run (tile sweep at 1024^3).
// Every configuration is validated before it is timed: matmul and conv2d against their float64
// references (conv: spot checks of sampled outputs of the real full-size layer).
//
//   npm run bench:kernels [-- --height 800 --width 1088 --repeats 3 --filter 3x3 --matmul 1024 --json out.json]

import { writeFileSync } from 'node:fs';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { Conv2d, type ConvTile, DEFAULT_CONV_TILE } from '../engine/kernels/conv2d.ts';
import { submitDispatches } from '../engine/kernels/dispatch.ts';
import { planMatmul, type MatmulTile } from '../engine/kernels/matmul.ts';
import { normal, rng } from '../tests/random.ts';
import { conv2dRefAt } from '../tests/reference/conv2d.ts';
import { matmulRef } from '../tests/reference/dense.ts';
import { compare, f32Accum } from '../tests/tolerance.ts';
import { timeDispatches } from './timing.ts';

function arg(name: string, fallback: number): number;
function arg(name: string, fallback: string): string;
function arg(name: string, fallback: number | string): number | string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  return typeof fallback === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}

interface ConvShape {
  layer: string;
  cin: number;
  cout: number;
  k: number;
  stride: number;
  h: number;
  w: number;
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

async function validateMatmul(ctx: GpuContext, tile: MatmulTile): Promise<void> {
  const [m, n, k] = [37, 45, 29];
  const a = normal(1, m * k);
  const b = normal(2, k * n);
  const bufs = { a: ctx.upload('a', a), b: ctx.upload('b', b), c: ctx.createBuffer('c', m * n * 4) };
  const ph = ctx.createBuffer('none', 16);
  submitDispatches(ctx, [planMatmul(ctx, { tile }, { m, n, k }, bufs, ph)]);
  const c = compare(await ctx.readF32(bufs.c, m * n), matmulRef(m, n, k, a, b), f32Accum, `matmul ${JSON.stringify(tile)}`);
  for (const x of [...Object.values(bufs), ph]) ctx.release(x);
  if (!c.ok) throw new Error(`validation failed, not timing: ${c.report}`);
}

async function main(): Promise<void> {
  const height = arg('height', 800);
  const width = arg('width', 1088);
  const repeats = arg('repeats', 3);
  const jsonOut = arg('json', '');
  const ctx = await GpuContext.create();
  console.log(`adapter: ${describeAdapter(ctx.report)}`);

  // ---- ceiling: best plain matmul ----------------------------------------------------------
  const N = arg('matmul', 1024);
  const a = ctx.upload('a', normal(3, N * N));
  const b = ctx.upload('b', normal(4, N * N));
  const c = ctx.createBuffer('c', N * N * 4);
  const ph = ctx.createBuffer('none', 16);
  const tiles: MatmulTile[] = [
    { tm: 4, tn: 8, wgX: 4, wgY: 4 },
    { tm: 8, tn: 4, wgX: 4, wgY: 4 },
    { tm: 4, tn: 8, wgX: 8, wgY: 2 },
    { tm: 4, tn: 4, wgX: 8, wgY: 8 },
    { tm: 8, tn: 8, wgX: 4, wgY: 4 },
    { tm: 4, tn: 4, wgX: 16, wgY: 16 },
  ];
  let best = { gflops: 0, tile: tiles[0] };
  console.log(`\nmatmul ${N}x${N}x${N} tile sweep (median of ${repeats}):`);
  for (const tile of tiles) {
    await validateMatmul(ctx, tile);
    const t = await timeDispatches(ctx, [planMatmul(ctx, { tile }, { m: N, n: N, k: N }, { a, b, c }, ph)], { repeats });
    const gflops = (2 * N ** 3) / t.medianMs / 1e6;
    console.log(`  TM=${tile.tm} TN=${tile.tn} WG=${tile.wgX}x${tile.wgY}: ${t.medianMs.toFixed(1)} ms, ${gflops.toFixed(2)} GFLOP/s`);
    if (gflops > best.gflops) best = { gflops, tile };
  }
  for (const x of [a, b, c, ph]) ctx.release(x);

  // ---- conv2d on the ResNet-50 shapes ------------------------------------------------------
  const convTile: ConvTile = DEFAULT_CONV_TILE;
  const rows: Array<ConvShape & { macs: number; ms: number; gflops: number; pct: number; worst: number }> = [];
  const filter = new RegExp(arg('filter', '.'));
  for (const s of resnet50ConvShapes(height, width).filter((x) => filter.test(x.layer))) {
    const pad = (s.k - 1) >> 1;
    const fanIn = s.cin * s.k * s.k;
    const weight = normal(10, s.cout * fanIn, Math.sqrt(2 / fanIn));
    const bias = normal(11, s.cout, 0.1);
    const input = normal(12, s.cin * s.h * s.w);
    const conv = new Conv2d(ctx, { cin: s.cin, cout: s.cout, kernel: [s.k, s.k], stride: [s.stride, s.stride], padding: [pad, pad], relu: true, tile: convTile }, weight, bias, s.layer);
    const shape = { batch: 1, h: s.h, w: s.w };
    const out = conv.outputShape(shape);
    const x = ctx.upload('x', input);
    const y = ctx.createBuffer('y', s.cout * out.h * out.w * 4);
    const d = conv.plan(shape, { input: x, output: y });

    // Validate: 256 sampled outputs (corners included) of the full-size layer.
    submitDispatches(ctx, [d]);
    const got = await ctx.readF32(y, s.cout * out.h * out.w);
    const r = rng(13);
    const idx = [0, got.length - 1, ...Array.from({ length: 254 }, () => Math.floor(r() * got.length))];
    const args = { batch: 1, cin: s.cin, h: s.h, w: s.w, cout: s.cout, kh: s.k, kw: s.k, stride: [s.stride, s.stride] as [number, number], padding: [pad, pad] as [number, number], relu: true };
    const want = idx.map((i) => {
      const o = Math.floor(i / (out.h * out.w));
      const rem = i % (out.h * out.w);
      return conv2dRefAt(args, input, weight, bias, undefined, 0, o, Math.floor(rem / out.w), rem % out.w);
    });
    const check = compare(idx.map((i) => got[i]), want, f32Accum, s.layer);
    if (!check.ok) throw new Error(`validation failed, not timing: ${check.report}`);

    const t = await timeDispatches(ctx, [d], { repeats, warmup: 1 });
    const macs = conv.macs(shape);
    const gflops = (2 * macs) / t.medianMs / 1e6;
    rows.push({ ...s, macs, ms: t.medianMs, gflops, pct: (100 * gflops) / best.gflops, worst: check.worstAbs });
    console.log(`  ${s.layer}: ${t.medianMs.toFixed(1)} ms, ${gflops.toFixed(2)} GFLOP/s (${((100 * gflops) / best.gflops).toFixed(0)}% of matmul)`);
    d.destroy();
    conv.destroy();
    ctx.release(x);
    ctx.release(y);
  }

  const t3 = rows.filter((r) => r.k === 3);
  const minPct3 = Math.min(...t3.map((r) => r.pct));
  const totalMs = rows.reduce((s, r) => s + r.ms, 0);
  const totalMacs = rows.reduce((s, r) => s + r.macs, 0);
  console.log(`\n### conv2d on ResNet-50 shapes, input ${height}x${width}`);
  console.log(`adapter: ${describeAdapter(ctx.report)}`);
  console.log(`ceiling: best matmul ${N}^3 = **${best.gflops.toFixed(2)} GFLOP/s** (TM=${best.tile.tm} TN=${best.tile.tn} WG=${best.tile.wgX}x${best.tile.wgY}); conv tile TM=${convTile.tm} TN=${convTile.tn} WG=${convTile.wgX}x${convTile.wgY}; median of ${repeats} after warm-up\n`);
  console.log('| layer | Cin→Cout | in H×W | GMAC | ms | GFLOP/s | % of matmul | worst abs err (256 samples) |');
  console.log('|---|---|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.layer} | ${r.cin}→${r.cout} | ${r.h}×${r.w} | ${(r.macs / 1e9).toFixed(3)} | ${r.ms.toFixed(1)} | ${r.gflops.toFixed(2)} | ${r.pct.toFixed(0)}% | ${r.worst.toExponential(1)} |`);
  }
  console.log(`\nall distinct shapes: ${(totalMacs / 1e9).toFixed(2)} GMAC in ${totalMs.toFixed(0)} ms = ${((2 * totalMacs) / totalMs / 1e6).toFixed(2)} GFLOP/s; 3x3 convs: worst ${minPct3.toFixed(0)}% of matmul`);
  if (jsonOut) {
    writeFileSync(jsonOut, JSON.stringify({ adapter: ctx.report, height, width, matmul: best, convTile, rows }, null, 2));
  }
  ctx.destroy();
}

await main();
process.exit(0);
