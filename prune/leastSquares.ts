// Least-squares reconstruction of the pruned ResNet body (He et al. 2017, "Channel Pruning for
// Accelerating Very Deep Neural Networks"; ThiNet, Luo et al. 2017): every conv whose input or
// output channels were pruned is refitted so that, on the *pruned* network's input at that
// layer, its (BN-folded, pre-ReLU) output matches the *unpruned* network's output on the
// unpruned network's input:   min_W || X_pruned W - Y_dense ||^2 + ridge.
// Layers are processed in network order and each fit sees the already-refitted layers before it,
// so the error pruning accumulated upstream is compensated too. A bottleneck's last conv is fitted
// to the unpruned block's sum minus the pruned shortcut (He et al. sec. 3.3, multi-branch):
// bn3(conv3'(x)) + shortcut_pruned ~ bn3(conv3(x_dense)) + shortcut_dense.
//
// On the GPU, with the engine's kernels: the convs run folded (Conv2d with FrozenBN folded into
// weight and bias, as the engine runs them: inference semantics, running statistics), the
// targets are the unpruned network's folded convs restricted to the kept output channels, and
// shaders/normal_equations.wgsl accumulates [X|1]^T [X|1|T] over positions and images (X: the
// im2col of the layer's input). The F x F system is solved on the CPU in float64 (prune/ridge.ts)
// and written back unfolded, so the file stays a torchvision state dict (conv weight, BN weight
// and running_mean; beta and running_var kept: writeFit). Output channels whose filter is all
// zero (carriers) or whose gamma is 0 stay.
//
// Every image contributes at most `positions` evenly spaced output positions per layer (He et al.
// sample 10 per image; neighbouring positions are nearly collinear). Memory is bounded: the normal equations of one layer at a time, plus the two networks'
// activations at the current block boundary ("frontier") for each image, kept on the GPU so
// that each block runs once per pass instead of from the image up (images beyond `maxBytes` of
// frontiers are not used). Per block: a pass for conv1/downsample (if their input was pruned),
// one for conv2, one for conv3, and one to advance the frontiers.

import { Conv2d } from '../engine/kernels/conv2d.ts';
import { recordMaxPool2d } from '../engine/kernels/maxpool2d.ts';
import type { GpuContext } from '../engine/gpu.ts';
import type { Tensor as GpuTensor } from '../engine/planner.ts';
import type { Recorder } from '../engine/recorder.ts';
import { BN_SUFFIXES, foldFrozenBatchNorm, RESNET50_BLOCKS, type MaskRCNNMeta } from '../weights-loader/maskrcnn.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';
import { calibrationResize, normalizationTensor, recordCalibrationImage } from './calibration.ts';
import { imageName, nonFinite, type CalibrationImage } from './calibrationOptions.ts';
import type { RidgeSolution } from './ridge.ts';
import { GpuPasses, type FitJob, type FitSample, type Kept } from './gpuPasses.ts';
import { zeroFilters } from './bnStatistics.ts';

export interface LeastSquaresOptions {
  /** Relative ridge (prune/ridge.ts). */
  ridge: number;
  /** Largest total size of the kept activations (both networks, all images). */
  maxBytes: number;
  /** Output positions per image and layer that enter the normal equations (evenly spaced). */
  positions: number;
  onProgress: (done: number, total: number) => void;
}

export interface LayerFit {
  layer: string;
  /** Features (Cin * KH * KW) and outputs refitted. */
  inputs: number;
  outputs: number;
  /** Squared error the refit removed on the calibration images, per sampled position (from the normal equations). */
  gain: number;
}

export interface LeastSquaresReport {
  images: number;
  layers: LayerFit[];
  seconds: number;
  ridge: number;
  /** Layers that were not refitted, and why. */
  skipped?: string[];
}

interface ConvGeometry {
  conv: string;
  bn: string;
  stride: number;
  padding: number;
}

/** The body's folded conv, optionally restricted to some output rows. */
function foldedConv(ctx: GpuContext, t: Map<string, Tensor>, g: ConvGeometry, eps: number, opts: { relu?: boolean; residual?: boolean; rows?: number[] }, label: string): Conv2d {
  const w = t.get(`${g.conv}.weight`)!;
  const [cout, cin, kh, kw] = w.shape;
  const [weight, bias, mean, variance] = BN_SUFFIXES.map((s) => t.get(`${g.bn}.${s}`)!.data);
  let f = foldFrozenBatchNorm(w.data, cout, { weight, bias, running_mean: mean, running_var: variance }, eps);
  let rows = cout;
  if (opts.rows) {
    const per = cin * kh * kw;
    const sel = opts.rows;
    const fw = new Float32Array(sel.length * per);
    sel.forEach((o, i) => fw.set(f.weight.subarray(o * per, (o + 1) * per), i * per));
    f = { weight: fw, bias: Float32Array.from(sel, (o) => f.bias[o]) };
    rows = sel.length;
  }
  return new Conv2d(ctx, { cin, cout: rows, kernel: [kh, kw], stride: [g.stride, g.stride], padding: [g.padding, g.padding], relu: opts.relu, residual: opts.residual }, f.weight, f.bias, label);
}

/** A 1x1 conv picking channels `rows` of a [C, H, W] map (exact in float32: one product by 1). */
function channelSelection(ctx: GpuContext, channels: number, rows: number[], label: string): Conv2d {
  const w = new Float32Array(rows.length * channels);
  rows.forEach((c, i) => (w[i * channels + c] = 1));
  return new Conv2d(ctx, { cin: channels, cout: rows.length, kernel: [1, 1] }, w, undefined, label);
}

export async function reconstructBody(
  ctx: GpuContext,
  input: { pruned: Map<string, Tensor>; dense: Map<string, Tensor>; meta: MaskRCNNMeta; kept: Map<string, number[]> },
  allImages: CalibrationImage[],
  o: LeastSquaresOptions,
): Promise<{ tensors: Map<string, Tensor>; report: LeastSquaresReport }> {
  const t0 = performance.now();
  const { dense, meta } = input;
  const eps = meta.eps;
  const t = new Map(input.pruned);
  const body = 'backbone.body';
  const shape = (m: Map<string, Tensor>, conv: string) => m.get(`${conv}.weight`)!.shape;
  const changed = (conv: string) => shape(t, conv).join() !== shape(dense, conv).join();
  const keptRows = (group: string, channels: number) => input.kept.get(group) ?? [...Array(channels).keys()];

  // Images whose frontiers (and a block's kept activations, at most as large again) fit in
  // maxBytes; the largest: layer1's output at stride 4.
  const widest = Math.max(shape(dense, `${body}.layer1.0.conv3`)[0], shape(dense, `${body}.conv1`)[0]);
  const resizes = allImages.map((im, i) => calibrationResize(ctx, im, i, meta, widest));
  const images: CalibrationImage[] = [];
  let bytes = 0;
  for (let i = 0; i < allImages.length; i++) {
    const r = resizes[i];
    const need = 2 * 2 * 4 * widest * Math.ceil(r.paddedH / 4) * Math.ceil(r.paddedW / 4);
    if (images.length && bytes + need > o.maxBytes) break;
    bytes += need;
    images.push(allImages[i]);
  }

  // Per block: which passes run (for the progress total).
  const blocks: Array<{ p: string; stage: number; index: number; inGroup: string }> = [];
  RESNET50_BLOCKS.forEach((n, s) => {
    for (let b = 0; b < n; b++) blocks.push({ p: `${body}.layer${s + 1}.${b}`, stage: s, index: b, inGroup: b === 0 ? (s === 0 ? `${body}.conv1` : `${body}.layer${s}`) : `${body}.layer${s + 1}` });
  });
  const passes = blocks.map((bl) => ({
    first: changed(`${bl.p}.conv1`) || (bl.index === 0 && changed(`${bl.p}.downsample.0`)),
    second: changed(`${bl.p}.conv2`),
    third: changed(`${bl.p}.conv3`),
  }));
  const total = images.length * (1 + passes.reduce((a, p) => a + 1 + +p.first + +p.second + +p.third, 0));
  let done = 0;
  const tick = () => o.onProgress(++done, total);

  const gpu = new GpuPasses(ctx);
  const table = normalizationTensor(ctx, meta);
  const frontiers: Array<{ d: Kept; p: Kept }> = [];
  const fits: LayerFit[] = [];
  const stem: ConvGeometry = { conv: `${body}.conv1`, bn: `${body}.bn1`, stride: 2, padding: 3 };
  try {
    // The frontiers after the stem and max-pool (the stem's input, the image, is not pruned).
    {
      const sd = foldedConv(ctx, dense, stem, eps, { relu: true }, 'dense stem');
      const sp = foldedConv(ctx, t, stem, eps, { relu: true }, 'pruned stem');
      try {
        for (let i = 0; i < images.length; i++) {
          const k = await gpu.run(`least squares: stem, ${imageName(images[i], i)}`, (rec) => {
            const x = recordCalibrationImage(rec, images[i], resizes[i], table);
            const pool = (conv: Conv2d, label: string) => {
              const y = conv.record(rec, x);
              const m = recordMaxPool2d(rec, { kernel: 3, stride: 2, padding: 1 }, y, label);
              rec.release(y);
              return m;
            };
            return { d: pool(sd, 'dense maxpool'), p: pool(sp, 'pruned maxpool') };
          });
          frontiers.push(k);
          tick();
        }
      } finally {
        sd.destroy();
        sp.destroy();
      }
    }

    for (const [bi, bl] of blocks.entries()) {
      const p = bl.p;
      const hasDs = bl.index === 0;
      const stride = bl.index === 0 && bl.stage > 0 ? 2 : 1;
      const geo = {
        conv1: { conv: `${p}.conv1`, bn: `${p}.bn1`, stride: 1, padding: 0 },
        conv2: { conv: `${p}.conv2`, bn: `${p}.bn2`, stride, padding: 1 },
        conv3: { conv: `${p}.conv3`, bn: `${p}.bn3`, stride: 1, padding: 0 },
        ds: { conv: `${p}.downsample.0`, bn: `${p}.downsample.1`, stride, padding: 0 },
      };
      const stageGroup = `${body}.layer${bl.stage + 1}`;
      const denseOut = shape(dense, geo.conv3.conv)[0];
      const rows = {
        conv1: keptRows(`${p}.conv1`, shape(dense, geo.conv1.conv)[0]),
        conv2: keptRows(`${p}.conv2`, shape(dense, geo.conv2.conv)[0]),
        stage: keptRows(stageGroup, denseOut),
      };
      const slicedStage = rows.stage.length < denseOut;
      const built: Conv2d[] = [];
      const make = (c: Conv2d) => (built.push(c), c);
      const d = {
        c1: make(foldedConv(ctx, dense, geo.conv1, eps, { relu: true }, `${p} dense conv1`)),
        c2: make(foldedConv(ctx, dense, geo.conv2, eps, { relu: true }, `${p} dense conv2`)),
        c3: make(foldedConv(ctx, dense, geo.conv3, eps, { relu: true, residual: true }, `${p} dense conv3`)),
        ds: hasDs ? make(foldedConv(ctx, dense, geo.ds, eps, {}, `${p} dense downsample`)) : undefined,
        sel: slicedStage ? make(channelSelection(ctx, denseOut, rows.stage, `${p} kept stage channels`)) : undefined,
      };
      let pr = {} as { c1: Conv2d; c2: Conv2d; c3: Conv2d; ds?: Conv2d };
      const rebuild = () => {
        for (const c of Object.values(pr)) c?.destroy();
        pr = {
          c1: foldedConv(ctx, t, geo.conv1, eps, { relu: true }, `${p} pruned conv1`),
          c2: foldedConv(ctx, t, geo.conv2, eps, { relu: true }, `${p} pruned conv2`),
          c3: foldedConv(ctx, t, geo.conv3, eps, { relu: true, residual: true }, `${p} pruned conv3`),
          ds: hasDs ? foldedConv(ctx, t, geo.ds, eps, {}, `${p} pruned downsample`) : undefined,
        };
      };
      rebuild();
      // Per image, the block's activations a later pass reads, computed once: the unpruned
      // network's (t1, t2, shortcut) and the pruned network's, each after the last refit of the
      // layer producing it (p1 after conv1's, p2 after conv2's, the shortcut after the downsample's).
      const state: Array<Partial<Record<'d1' | 'd2' | 'idD' | 'p1' | 'p2' | 'idP', Kept>>> = images.map(() => ({}));
      const keepInto = (i: number, kept: Record<string, Kept>) => Object.assign(state[i], kept);
      /** Records what image i's pass needs and is not kept yet; returns the tensors (new ones to keep, kept ones to read). */
      const compute = (rec: Recorder, i: number, need: { dense?: boolean; p1?: boolean; p2?: boolean; idP?: boolean }) => {
        const s = state[i];
        const xd = frontiers[i].d.tensor;
        const xp = frontiers[i].p.tensor;
        const fresh: Record<string, GpuTensor> = {};
        const get = (k: keyof typeof s) => fresh[k] ?? s[k]?.tensor;
        if (need.dense && !s.d1) {
          fresh.d1 = d.c1.record(rec, xd);
          fresh.d2 = d.c2.record(rec, fresh.d1);
          if (d.ds) fresh.idD = d.ds.record(rec, xd);
        }
        if ((need.p1 || need.p2) && !s.p1 && !s.p2) fresh.p1 = pr.c1.record(rec, xp);
        if (need.p2 && !s.p2) fresh.p2 = pr.c2.record(rec, get('p1')!);
        if (need.idP && pr.ds && !s.idP) fresh.idP = pr.ds.record(rec, xp);
        const view = { d1: get('d1'), d2: get('d2'), idD: get('idD') ?? xd, p1: get('p1'), p2: get('p2'), idP: get('idP') ?? xp, xd, xp };
        return { fresh, view };
      };
      /** One pass over the images accumulating the layers' normal equations, then their solves. */
      const fitPass = async (
        need: Parameters<typeof compute>[2],
        targets: Array<{ g: ConvGeometry; target: (rec: Recorder, x: ReturnType<typeof compute>['view']) => FitSample & { release: GpuTensor[] } }>,
      ) => {
        const views: Array<ReturnType<typeof compute>['view']> = [];
        const jobs: FitJob[] = targets.map(({ g, target }) => {
          const [cout, cin, kh, kw] = shape(t, g.conv);
          return {
            name: g.conv,
            spec: { cin, kernel: [kh, kw], stride: [g.stride, g.stride], padding: [g.padding, g.padding], targets: cout },
            current: currentFolded(t, g, eps),
            record: (rec, i) => {
              const { release, ...sample } = target(rec, views[i]);
              return { samples: [sample], release };
            },
          };
        });
        const { solutions, kept } = await gpu.fit(jobs, images.length, {
          positions: o.positions,
          ridge: o.ridge,
          label: `least squares: ${p}`,
          tick,
          keep: (rec, i) => {
            const c = compute(rec, i, need);
            views[i] = c.view;
            return c.fresh;
          },
        });
        kept.forEach((k, i) => keepInto(i, k));
        targets.forEach(({ g }, k) => {
          if (solutions[k]) fits.push(writeFit(t, g, solutions[k]!, eps));
        });
        rebuild();
      };

      try {
        if (passes[bi].first) {
          // Same input (the block's), so one pass fits both.
          const jobs = [];
          for (const [g, r, what] of [[geo.conv1, rows.conv1, 'conv1'], ...(hasDs ? [[geo.ds, rows.stage, 'downsample'] as const] : [])] as const) {
            if (!changed(g.conv)) continue;
            const c = make(foldedConv(ctx, dense, g, eps, { rows: [...r] }, `${p} ${what} target`));
            jobs.push({
              g,
              target: (rec: Recorder, x: ReturnType<typeof compute>['view']) => {
                const y = c.record(rec, x.xd);
                return { input: x.xp, target: y, release: [y] };
              },
            });
          }
          await fitPass({ dense: true }, jobs);
        }
        if (passes[bi].second) {
          const target = make(foldedConv(ctx, dense, geo.conv2, eps, { rows: rows.conv2 }, `${p} conv2 target`));
          await fitPass({ dense: true, p1: true }, [
            {
              g: geo.conv2,
              target: (rec, x) => {
                const y = target.record(rec, x.d1!);
                return { input: x.p1!, target: y, release: [y] };
              },
            },
          ]);
        }
        if (passes[bi].third) {
          const target = make(foldedConv(ctx, dense, geo.conv3, eps, { rows: rows.stage, residual: true }, `${p} conv3 target`));
          await fitPass({ dense: true, p2: true, idP: true }, [
            {
              g: geo.conv3,
              target: (rec, x) => {
                const idDense = d.sel ? d.sel.record(rec, x.idD) : x.idD;
                const y = target.record(rec, x.d2!, { residual: idDense });
                if (d.sel) rec.release(idDense);
                return { input: x.p2!, target: y, base: x.idP, release: [y] };
              },
            },
          ]);
        }
        // Advance the frontiers through the (refitted) block.
        for (let i = 0; i < images.length; i++) {
          const next = await gpu.run(`least squares: ${p} output, ${imageName(images[i], i)}`, (rec) => {
            const { fresh, view } = compute(rec, i, { dense: true, p2: true, idP: true });
            const out = { d: d.c3.record(rec, view.d2!, { residual: view.idD }), p: pr.c3.record(rec, view.p2!, { residual: view.idP }) };
            rec.release(...Object.values(fresh));
            return out;
          });
          for (const k of [frontiers[i].d, frontiers[i].p, ...Object.values(state[i])]) if (k) gpu.drop(k);
          state[i] = {};
          frontiers[i] = next;
          tick();
        }
      } finally {
        for (const c of built) c.destroy();
        for (const c of Object.values(pr)) c?.destroy();
      }
    }
  } finally {
    gpu.destroy();
    ctx.release(table.buffer);
  }
  return { tensors: t, report: { images: images.length, layers: fits, seconds: (performance.now() - t0) / 1000, ridge: o.ridge } };
}

/** The layer's folded weights in use, [M][F] with the bias last (the fit's starting point, for its reported gain). */
function currentFolded(t: Map<string, Tensor>, g: ConvGeometry, eps: number): Float64Array {
  const w = t.get(`${g.conv}.weight`)!;
  const cout = w.shape[0];
  const per = w.data.length / cout;
  const [weight, bias, running_mean, running_var] = BN_SUFFIXES.map((s) => t.get(`${g.bn}.${s}`)!.data);
  const folded = foldFrozenBatchNorm(w.data, cout, { weight, bias, running_mean, running_var }, eps);
  const out = new Float64Array(cout * (per + 1));
  for (let o = 0; o < cout; o++) {
    out.set(folded.weight.subarray(o * per, (o + 1) * per), o * (per + 1));
    out[o * (per + 1) + per] = folded.bias[o];
  }
  return out;
}

/**
 * Writes one layer's refit into `t` (new tensors); zero-filter and gamma-0 output channels are
 * left as they are. The folded solution (W_f, b_f) is unfolded with a per-channel scale s' chosen
 * so that the conv row keeps its previous magnitude (max |w|): W = W_f / s', gamma = s' *
 * sqrt(running_var + eps), running_mean = (beta - b_f) / s'. Keeping gamma instead would need
 * W_f / s, which for a channel with gamma near 0 (bn3's are initialised at 0 in training) is huge
 * wherever the refit asks it to carry a shortcut's correction: it overflows float16 files and
 * loses precision in float32 ones.
 */
function writeFit(t: Map<string, Tensor>, g: ConvGeometry, solution: RidgeSolution, eps: number): LayerFit {
  const w = t.get(`${g.conv}.weight`)!;
  const [gamma, beta, mean, variance] = BN_SUFFIXES.map((s) => t.get(`${g.bn}.${s}`)!.data);
  const targets = w.shape[0];
  const per = w.data.length / targets;
  const features = per + 1;
  const { weights, gain } = solution;
  const fixed = zeroFilters(w.data, targets);
  const nw = new Float32Array(w.data);
  const nm = new Float32Array(mean);
  const ng = new Float32Array(gamma);
  let reduced = 0;
  for (let o = 0; o < targets; o++) {
    const s = gamma[o] / Math.sqrt(variance[o] + eps);
    if (fixed[o] || !(s !== 0 && Number.isFinite(s))) continue;
    let oldMax = 0;
    let newMax = 0;
    for (let i = 0; i < per; i++) {
      oldMax = Math.max(oldMax, Math.abs(w.data[o * per + i]));
      newMax = Math.max(newMax, Math.abs(weights[o * features + i]));
    }
    const scale = newMax > 0 && oldMax > 0 ? Math.sign(s) * (newMax / oldMax) : s;
    for (let i = 0; i < per; i++) nw[o * per + i] = weights[o * features + i] / scale;
    nm[o] = (beta[o] - weights[o * features + per]) / scale;
    ng[o] = scale * Math.sqrt(variance[o] + eps);
    reduced += gain[o];
  }
  if (![nw, nm, ng].every((a) => a.every(Number.isFinite))) throw nonFinite(`the least-squares refit of '${g.conv}' is not finite`);
  t.set(`${g.conv}.weight`, { ...w, data: nw });
  t.set(`${g.bn}.running_mean`, { ...t.get(`${g.bn}.running_mean`)!, data: nm });
  t.set(`${g.bn}.weight`, { ...t.get(`${g.bn}.weight`)!, data: ng });
  return { layer: g.conv, inputs: per, outputs: targets, gain: reduced / solution.positions };
}
