// Pruning (prune/) on the golden model: GPU L1 norms against the float64 reference (awkward
// segment sizes, buffers split between segments), the ranking's threshold, and for every ratio
// 0..0.9 x scope x granularity/mode a file that the loader accepts (producer/consumer channels
// consistent) and that segments an image; compact reproduces mask (features and detections);
// predictors, round-to, min channels, legacy key names and the report's counts.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { parsePruneArgs, pruneCommand } from '../bin/prune.ts';
import { l1Norms, packSegments } from '../engine/kernels/l1Norms.ts';
import { normalizationTable, recordPreprocess, resizePlan } from '../engine/kernels/preprocess.ts';
import { ResNetFpn } from '../engine/maskrcnn/backbone.ts';
import { loadMaskRCNN, type Detection } from '../engine/maskrcnn/model.ts';
import { Recorder } from '../engine/recorder.ts';
import { rleIou } from '../engine/rle.ts';
import type { GpuContext } from '../engine/gpu.ts';
import { boxIou } from '../eval/match.ts';
import { buildPruneGraph, prunableGroups, planPruning, prune, resolvePruneOptions, type PruneOptions } from '../prune/index.ts';
import { layerSegments } from '../prune/rank.ts';
import { canonicalizeKeys, loadMaskRCNNWeights, maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors, type SafetensorsFile } from '../weights-loader/safetensors.ts';
import { goldenCase, goldenWeightBytes } from './golden.ts';
import { gpuSuite } from './harness.ts';
import { normal } from './random.ts';
import { l1NormsRef } from './reference/l1_norms.ts';
import { toLegacyNames } from './synthetic-model.ts';
import { assertClose, f32Accum, type Tolerance } from './tolerance.ts';

/** compact vs mask after ~60 float32 layers: only summation order differs (measured worst 6e-6). */
const sameNetwork: Tolerance = { name: 'sameNetwork', abs: 5e-5, rel: 1e-4 };

const golden = () => parseSafetensors(goldenWeightBytes(), maskrcnnParseOptions);
const base = golden();
const canonical = canonicalizeKeys(base.tensors);
const graph = buildPruneGraph(canonical);
const smallImage = goldenCase(2).image;

/** Same detections, in order: box IoU > 0.99, label, score within 1e-3, mask IoU > 0.98. */
function assertSameDetections(got: Detection[], want: Detection[], what: string): { worstBox: number; worstMask: number } {
  assert.is(got.length, want.length, `${what}: detection count`);
  let worstBox = 1;
  let worstMask = 1;
  want.forEach((w, i) => {
    const g = got[i];
    const b = boxIou(g.box, w.box);
    const m = rleIou(g.mask, w.mask);
    const bothEmpty = g.mask.counts.length === 1 && w.mask.counts.length === 1;
    worstBox = Math.min(worstBox, b);
    worstMask = Math.min(worstMask, bothEmpty ? 1 : m);
    assert.ok(b > 0.99, `${what}: detection ${i} box IoU ${b.toFixed(4)}`);
    assert.is(g.label, w.label, `${what}: detection ${i} label`);
    assert.ok(Math.abs(g.score - w.score) < 1e-3, `${what}: detection ${i} score ${g.score} vs ${w.score}`);
    assert.ok(bothEmpty || m > 0.98, `${what}: detection ${i} mask IoU ${m.toFixed(4)}`);
  });
  return { worstBox, worstMask };
}

async function segmentWith(ctx: GpuContext, file: SafetensorsFile, images: number[]): Promise<Detection[][]> {
  const model = await loadMaskRCNN(ctx, file);
  try {
    const out: Detection[][] = [];
    for (const i of images) out.push((await model.segment(i === 2 ? smallImage : goldenCase(i).image)).detections);
    return out;
  } finally {
    model.destroy();
  }
}

const test = gpuSuite('prune');

test.test('GPU L1 norms = float64 reference: awkward segments, split buffers', async (ctx) => {
  const shapes: Array<[number, number]> = [[1, 37], [49, 37], [9, 1], [4608, 3], [3, 1001], [0, 5], [2, 0]];
  const tensors = shapes.map(([size, count], i) => ({ data: normal(300 + i, size * count, 0.5), size, count }));
  const want = l1NormsRef(tensors);
  for (const maxChunkFloats of [undefined, 5000, 4608]) {
    if (maxChunkFloats) assert.ok(packSegments(tensors, maxChunkFloats).length > 2, 'the small buffer limit splits the tensors');
    const got = await l1Norms(ctx, tensors, { maxChunkFloats });
    got.forEach((g, i) => assertClose(g, want[i], f32Accum, `segments of ${shapes[i][0]} x ${shapes[i][1]}, chunk ${maxChunkFloats ?? 'adapter limit'}`));
  }
});

test.test('GPU L1 norms of every golden filter and kernel = reference', async (ctx) => {
  for (const granularity of ['filter', 'kernel'] as const) {
    const segs = graph.order.map((n) => layerSegments(graph.layers.get(n)!, canonical.get(graph.layers.get(n)!.weightKey)!.data, granularity));
    const got = await l1Norms(ctx, segs, { maxChunkFloats: 1 << 16 });
    const want = l1NormsRef(segs);
    assertClose(Float32Array.from(got.flatMap((g) => [...g])), Float64Array.from(want.flatMap((w) => [...w])), f32Accum, `${granularity} norms of ${graph.order.length} layers`);
  }
  // The deconv's output filter is W[:, o] of its [Cin][Cout][2][2] weight.
  const deconv = graph.layers.get('roi_heads.mask_predictor.conv5_mask')!;
  const w = canonical.get(deconv.weightKey)!.data;
  let norm = 0;
  for (let i = 0; i < deconv.cin; i++) for (let j = 0; j < 4; j++) norm += Math.abs(w[(i * deconv.cout + 5) * 4 + j]);
  assert.ok(Math.abs(layerSegments(deconv, w, 'filter').data.subarray(5 * deconv.cin * 4, 6 * deconv.cin * 4).reduce((a, v) => a + Math.abs(v), 0) - norm) < 1e-5);
});

test.test('global ranking: one threshold splits removed and kept filters; layer scope prunes each group alike', async () => {
  const norms = new Map(graph.order.map((n) => [n, Float32Array.from(l1NormsRef([layerSegments(graph.layers.get(n)!, canonical.get(graph.layers.get(n)!.weightKey)!.data, 'filter')])[0])]));
  for (const normalize of ['none', 'mean', 'fanin'] as const) {
    for (const granularity of ['filter', 'kernel'] as const) {
      const o = resolvePruneOptions({ ratio: 0.37, normalize, granularity, coupled: 'prune', compensation: 'bias' });
      const n = granularity === 'filter' ? norms : new Map(graph.order.map((l) => [l, Float32Array.from(l1NormsRef([layerSegments(graph.layers.get(l)!, canonical.get(graph.layers.get(l)!.weightKey)!.data, 'kernel')])[0])]));
      const { plan, selection, scores } = planPruning(graph, canonical, n, prunableGroups(graph, o), o, 1e-5);
      const t = selection.threshold!;
      let removed = 0;
      for (const [name, mask] of granularity === 'filter' ? plan.channels : plan.kernels!) {
        const sc = scores.get(name)!;
        // A group at its minimum of 1 channel keeps it even below the threshold.
        const atMinimum = granularity === 'filter' && mask.length - mask.reduce((a, b) => a + b, 0) === 1;
        mask.forEach((r, i) => {
          removed += r;
          assert.ok(r ? sc[i] <= t : sc[i] >= t || atMinimum, `${normalize} ${granularity}: ${name}[${i}] score ${sc[i]} ${r ? 'removed' : 'kept'}, threshold ${t}`);
        });
      }
      assert.is(removed, Math.round(0.37 * selection.units), `${normalize} ${granularity}: removed count`);
    }
  }
  // --bn-scale scores a BN conv's filter by L1 x |gamma| / sqrt(var + eps), the folded filter's L1.
  const bn = planPruning(graph, canonical, norms, ['backbone.body.layer2.1.conv2'], resolvePruneOptions({ ratio: 0.5, bnScale: true }), 1e-5).scores.get('backbone.body.layer2.1.conv2')!;
  const [gamma, variance] = ['weight', 'running_var'].map((s) => canonical.get(`backbone.body.layer2.1.bn2.${s}`)!.data);
  bn.forEach((v, o) => assert.ok(Math.abs(v - (norms.get('backbone.body.layer2.1.conv2')![o] * Math.abs(gamma[o])) / Math.sqrt(variance[o] + 1e-5)) < 1e-9, 'bn-scaled score'));
  const o = resolvePruneOptions({ ratio: 0.5, scope: 'layer', coupled: 'prune', compensation: 'bias' });
  const layer = planPruning(graph, canonical, norms, prunableGroups(graph, o), o, 1e-5);
  for (const [g, mask] of layer.plan.channels) {
    const c = graph.groups.get(g)!.channels;
    assert.is(mask.reduce((a, b) => a + b, 0), Math.min(c - 1, Math.round(0.5 * c)), `layer scope: ${g}`);
  }
});

// Every ratio x scope x granularity/mode: the loader's producer/consumer checks pass and the
// network segments an image. Normalisation and the coupled policy rotate over the cases.
const ratios = [0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9];
const variants = [
  { granularity: 'filter', mode: 'compact' },
  { granularity: 'filter', mode: 'mask' },
  { granularity: 'kernel', mode: 'mask' },
  { granularity: 'kernel', mode: 'compact' },
] as const;
for (const scope of ['global', 'layer'] as const) {
  test.test(`${scope} scope: every ratio and granularity/mode gives a file that loads and runs`, async (ctx) => {
    let k = 0;
    for (const ratio of ratios) {
      for (const v of variants) {
        const options: PruneOptions = { ratio, scope, ...v, normalize: (['none', 'mean', 'fanin'] as const)[k % 3], coupled: k % 2 ? 'prune' : 'leave' };
        k++;
        const what = JSON.stringify(options);
        const { file, report } = await prune(ctx, base, options);
        const w = loadMaskRCNNWeights(file);
        assert.equal(new Set(file.tensors.keys()), new Set(base.tensors.keys()), `${what}: key names`);
        for (const [key, t] of file.tensors) {
          const before = base.tensors.get(key)!;
          assert.is(t.shape.length, before.shape.length, `${what}: ${key} rank`);
          if (v.mode === 'mask') assert.equal(t.shape, before.shape, `${what}: ${key} shape`);
          else assert.ok(t.shape.every((d, i) => d >= 1 && d <= before.shape[i]), `${what}: ${key} shape ${t.shape}`);
        }
        const s = report.summary;
        if (ratio === 0) {
          for (const [key, t] of file.tensors) assert.equal(t.data, base.tensors.get(key)!.data, `${what}: ratio 0 changes nothing (${key})`);
        } else if (v.granularity === 'kernel') {
          assert.ok(s.kernels!.zeroed > 0 && s.params.nonzeroAfter < s.params.nonzeroBefore, `${what}: kernels zeroed`);
        } else assert.ok(s.channels.removed > 0, `${what}: channels removed`);
        if (v.mode === 'compact') assert.ok(s.gmacs.after.total <= s.gmacs.before.total && s.params.after <= s.params.before, `${what}: compact shrinks`);
        assert.ok(Math.abs(s.params.compressionRate - s.params.nonzeroBefore / s.params.nonzeroAfter) < 1e-3, `${what}: compression rate`);
        const model = await loadMaskRCNN(ctx, w);
        const r = await model.segment(smallImage);
        model.destroy();
        assert.ok(r.detections.length <= 100 && r.detections.every((d) => d.box.every(Number.isFinite) && d.score > 0.05 && d.score <= 1), `${what}: detections`);
      }
    }
  });
}

async function fpnFeatures(ctx: GpuContext, file: SafetensorsFile, image: number): Promise<Array<{ c: number; h: number; w: number; data: Float32Array }>> {
  const w = loadMaskRCNNWeights(file);
  const g = goldenCase(image);
  const plan = resizePlan(g.image.height, g.image.width, w.meta.minSize, w.meta.maxSize);
  const backbone = new ResNetFpn(ctx, w);
  const rec = new Recorder(ctx, 'fpn features');
  try {
    const { image, output: input } = recordPreprocess(rec, plan, rec.input('t', normalizationTable(w.meta.imageMean, w.meta.imageStd)));
    image.write(g.image.data, 3);
    const levels = backbone.recordFpn(rec, backbone.recordBody(rec, input));
    rec.submit();
    const res = [];
    for (const l of levels) {
      const [c, h, wd] = l.shape;
      res.push({ c, h, w: wd, data: await ctx.readF32(l.buffer, c * h * wd) });
    }
    return res;
  } finally {
    rec.destroy();
    backbone.destroy();
  }
}

/** Max |mask - compact| over the FPN's kept channels, by distance to the map's border (0, 1, >= 2). */
async function fpnDifference(ctx: GpuContext, options: PruneOptions): Promise<{ ring: number[]; levels: number }> {
  const m = await prune(ctx, base, { ...options, mode: 'mask' });
  const c = await prune(ctx, base, { ...options, mode: 'compact' });
  const fpnW = m.file.tensors.get('backbone.fpn.layer_blocks.0.0.weight')!;
  const per = fpnW.data.length / fpnW.shape[0];
  const kept = [...Array(fpnW.shape[0]).keys()].filter((o) => fpnW.data.subarray(o * per, (o + 1) * per).some((x) => x !== 0));
  const a = await fpnFeatures(ctx, m.file, 0);
  const b = await fpnFeatures(ctx, c.file, 0);
  const ring = [0, 0, 0];
  a.forEach((A, li) => {
    assert.is(b[li].c, kept.length, 'compact FPN width');
    kept.forEach((ch, ci) => {
      for (let y = 0; y < A.h; y++)
        for (let x = 0; x < A.w; x++) {
          const d = Math.min(2, y, x, A.h - 1 - y, A.w - 1 - x);
          ring[d] = Math.max(ring[d], Math.abs(A.data[(ch * A.h + y) * A.w + x] - b[li].data[(ci * A.h + y) * A.w + x]));
        }
    });
  });
  return { ring, levels: a.length };
}

test.test('compact = mask at 30 %: FPN features everywhere (carrier channels); bias folding is off at the border', async (ctx) => {
  const options: PruneOptions = { ratio: 0.3, coupled: 'prune', normalize: 'mean' };
  const carrier = await fpnDifference(ctx, options);
  console.log(`    carrier: max |mask - compact| on the FPN maps by border distance 0/1/>=2: ${carrier.ring.map((v) => v.toExponential(1)).join(' / ')}`);
  assert.ok(Math.max(...carrier.ring) < sameNetwork.abs, `carrier compaction reproduces the masked network (${carrier.ring})`);
  const bias = await fpnDifference(ctx, { ...options, compensation: 'bias' });
  console.log(`    bias folding: max |mask - compact| by border distance 0/1/>=2: ${bias.ring.map((v) => v.toExponential(1)).join(' / ')} (values up to ~7)`);
  assert.ok(bias.ring[0] > 1e-2, 'bias folding differs under the padded border (if not, the carrier is unnecessary: update the docs)');
  const none = await fpnDifference(ctx, { ...options, compensation: 'none' });
  console.log(`    no compensation: max |mask - compact| by border distance 0/1/>=2: ${none.ring.map((v) => v.toExponential(1)).join(' / ')}`);
  assert.ok(none.ring[2] > 1e-2, 'dropping the constants changes the maps away from the border too');
  // Only 1x1-consumed and zeroed channels: bias folding is exact too.
  const exact = await fpnDifference(ctx, { ...options, compensation: 'bias', exclude: ['*.conv1', 'backbone.fpn.inner_blocks.*', 'roi_heads.mask_head.[012].0'] });
  assert.ok(Math.max(...exact.ring) < sameNetwork.abs, `bias folding into 1x1 consumers is exact (${exact.ring})`);
});

// The golden model has random weights: pruning 30 % of its filters leaves no detection above
// 0.05 (its class scores are calibrated on the dense features), so detections are compared where
// the masked model still has some; 30 % is compared on the FPN maps above.
test.test('compact = mask: same detections on the golden images', async (ctx) => {
  const cases: PruneOptions[] = [
    { ratio: 0.1, coupled: 'prune', normalize: 'mean' },
    { ratio: 0.1, coupled: 'prune', scope: 'layer' },
    { ratio: 0.3, coupled: 'prune', normalize: 'mean', granularity: 'kernel' },
  ];
  for (const options of cases) {
    const masked = await segmentWith(ctx, (await prune(ctx, base, { ...options, mode: 'mask' })).file, [0, 1, 2]);
    const compact = await segmentWith(ctx, (await prune(ctx, base, { ...options, mode: 'compact' })).file, [0, 1, 2]);
    const counts = masked.map((d) => d.length);
    let worst = { worstBox: 1, worstMask: 1 };
    masked.forEach((want, i) => {
      const r = assertSameDetections(compact[i], want, `${JSON.stringify(options)} image ${i}`);
      worst = { worstBox: Math.min(worst.worstBox, r.worstBox), worstMask: Math.min(worst.worstMask, r.worstMask) };
    });
    console.log(`    ${JSON.stringify(options)}: detections ${counts.join('/')}, worst box IoU ${worst.worstBox.toFixed(5)}, worst mask IoU ${worst.worstMask.toFixed(5)}`);
    assert.ok(counts.reduce((a, b) => a + b) >= 10, 'the comparison has detections to compare');
  }
});

test.test('predictors keep their outputs; round_to, min channels and coupled groups hold; legacy names stay', async (ctx) => {
  const preds = ['rpn.head.cls_logits', 'rpn.head.bbox_pred', 'roi_heads.box_predictor.cls_score', 'roi_heads.box_predictor.bbox_pred', 'roi_heads.mask_predictor.mask_fcn_logits'];
  const { file: masked } = await prune(ctx, base, { ratio: 0.6, mode: 'mask', coupled: 'prune' });
  for (const p of preds) for (const s of ['weight', 'bias']) assert.equal(masked.tensors.get(`${p}.${s}`)!.data, base.tensors.get(`${p}.${s}`)!.data, `mask mode leaves ${p}.${s} alone`);
  for (const roundTo of [4, 8]) {
    const { file, report } = await prune(ctx, base, { ratio: 0.5, roundTo, coupled: 'prune' });
    for (const p of preds) assert.is(file.tensors.get(`${p}.weight`)!.shape[0], base.tensors.get(`${p}.weight`)!.shape[0], `${p} outputs`);
    for (const g of report.groups) assert.ok(g.kept === g.total || g.kept % roundTo === 0, `round_to ${roundTo}: ${g.name} keeps ${g.kept}/${g.total}`);
    assert.ok(report.groups.some((g) => g.kept < g.total), `round_to ${roundTo} still prunes`);
  }
  const { file, report } = await prune(ctx, base, { ratio: 0.9, minChannels: 3, coupled: 'prune', scope: 'layer' });
  for (const g of report.groups) assert.ok(g.kept >= Math.min(3, g.total), `min channels: ${g.name} keeps ${g.kept}`);
  // The loader checks every producer/consumer pair; here: the coupled groups really shrank.
  const w = loadMaskRCNNWeights(file);
  w.layers.forEach((blocks, l) => {
    const width = blocks[0].downsample!.cout;
    assert.ok(width < 4 * (8 << l), `stage ${l + 1} pruned as one group (${width} channels)`);
    for (const b of blocks) assert.is(b.conv3.cout, width, 'every conv3 of a stage has the downsample\'s width');
    assert.is(w.fpn.inner[l].cin, width, 'the FPN lateral takes the stage width');
  });
  assert.ok(w.fpn.layer[0].cout < 32 && w.boxHead.fc6.inFeatures === w.fpn.layer[0].cout * 49, 'FPN output group and fc6 columns');
  const heads = await prune(ctx, base, { ratio: 0.5, exclude: ['roi_heads.*', 'rpn.*'], maxLayerRatio: 0.25 });
  for (const [key, t] of heads.file.tensors) if (/^(roi_heads|rpn)\./.test(key)) assert.equal(t.shape, base.tensors.get(key)!.shape, `exclude keeps ${key}`);
  for (const g of heads.report.groups) assert.ok(g.kept >= Math.ceil(0.75 * g.total), `maxLayerRatio 0.25: ${g.name} keeps ${g.kept}/${g.total}`);
  const legacy = { metadata: base.metadata, tensors: toLegacyNames(base.tensors) };
  const out = await prune(ctx, legacy, { ratio: 0.3, coupled: 'prune' });
  assert.equal(new Set(out.file.tensors.keys()), new Set(legacy.tensors.keys()), 'legacy key names preserved');
  assert.ok(JSON.parse(out.file.metadata.pruning).params.compressionRate > 1, 'metadata records the pruning');
  loadMaskRCNNWeights(out.file);
});

test.test('maskgpu prune: writes a loadable file and a report, never over its input, OUT only with --force', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'maskgpu-prune-'));
  const log = console.log;
  try {
    const input = join(dir, 'in.safetensors');
    await writeFile(input, goldenWeightBytes());
    const out = join(dir, 'out.safetensors');
    const report = join(dir, 'r.json');
    const args = ['--weights', input, '--ratio', '0.4', '--coupled', 'prune', '--round-to', '2', '--out', out, '--report', report];
    console.log = () => undefined;
    assert.is(await pruneCommand(args), 0);
    console.log = log;
    const file = parseSafetensors(new Uint8Array(await readFile(out)), maskrcnnParseOptions);
    loadMaskRCNNWeights(file);
    const r = JSON.parse(await readFile(report, 'utf8'));
    assert.is(r.summary.options.roundTo, 2);
    assert.ok(r.summary.params.after < r.summary.params.before && r.layers.length === graph.order.length, 'report');
    const rejects = async (argv: string[], pattern: RegExp) => {
      let message = '';
      await pruneCommand(argv).catch((e: Error) => (message = e.message));
      assert.match(message, pattern);
    };
    await rejects(args, /already exists; pass --force/);
    await rejects([...args.slice(0, -4), '--out', input, '--force'], /is the input weights file/);
    await rejects(['--weights', input, '--ratio', '0.4', '--out', join(dir, 'x'), '--report', input, '--force'], /is the input weights file/);
    assert.equal(new Uint8Array(await readFile(input)), goldenWeightBytes(), 'the input is untouched');
    assert.throws(() => parsePruneArgs(['--weights', input, '--out', out]), /--ratio R is required/);
    assert.throws(() => parsePruneArgs(['--weights', input, '--out', out, '--ratio', '0.3', '--scope', 'all']), /scope is 'all': use one of global, layer/);
    assert.throws(() => parsePruneArgs(['--weights', input, '--out', out, '--ratio', '0.3', '--round-to', '0']), /roundTo is 0/);
  } finally {
    console.log = log;
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
