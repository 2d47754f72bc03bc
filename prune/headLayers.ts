// The heads' layers for the least-squares refits (leastSquaresHeads.ts), built from a raw state
// dict with the engine's kernels: convs and Linears with their own bias (optionally restricted to
// some output rows, or several layers stacked into one target), the mask predictor's transposed
// conv and its 1x1 form (engine/kernels/convTranspose2d.ts: rows (o, ky, kx)); and the write-back of
// a solved refit into the state dict.

import { Conv2d } from '../engine/kernels/conv2d.ts';
import { ConvTranspose2d, reorderConvTransposeWeight } from '../engine/kernels/convTranspose2d.ts';
import { Linear } from '../engine/kernels/linear.ts';
import type { GpuContext } from '../engine/gpu.ts';
import type { Tensor } from '../weights-loader/safetensors.ts';
import { zeroFilters } from './bnStatistics.ts';
import { nonFinite } from './calibrationOptions.ts';
import type { LayerFit } from './leastSquares.ts';
import type { RidgeSolution } from './ridge.ts';

const all = (n: number) => [...Array(n).keys()];

/** A conv with its own bias from the state dict, optionally restricted to output rows. */
export function biasConv(ctx: GpuContext, t: Map<string, Tensor>, name: string, opts: { relu?: boolean; rows?: number[]; padding?: number } = {}): Conv2d {
  const w = t.get(`${name}.weight`)!;
  const b = t.get(`${name}.bias`)!.data;
  const [cout, cin, kh, kw] = w.shape;
  const rows = opts.rows ?? all(cout);
  const per = cin * kh * kw;
  const weight = new Float32Array(rows.length * per);
  rows.forEach((o, i) => weight.set(w.data.subarray(o * per, (o + 1) * per), i * per));
  const pad = opts.padding ?? (kh - 1) / 2;
  return new Conv2d(ctx, { cin, cout: rows.length, kernel: [kh, kw], padding: [pad, pad], relu: opts.relu }, weight, Float32Array.from(rows, (o) => b[o]), name);
}

/** Several convs' rows stacked into one 1x1 conv (a fit target holding all of them). */
export function stackedConv(ctx: GpuContext, t: Map<string, Tensor>, names: string[], label: string): Conv2d {
  const ws = names.map((n) => t.get(`${n}.weight`)!);
  const weight = new Float32Array(ws.reduce((a, w) => a + w.data.length, 0));
  let at = 0;
  for (const w of ws) weight.set(w.data, (at += w.data.length) - w.data.length);
  const bias = Float32Array.from(names.flatMap((n) => [...t.get(`${n}.bias`)!.data]));
  const [, cin, kh, kw] = ws[0].shape;
  return new Conv2d(ctx, { cin, cout: bias.length, kernel: [kh, kw] }, weight, bias, label);
}

/** Linears stacked into one (their rows in order); `rows` restricts the first one's outputs. */
export function linear(ctx: GpuContext, t: Map<string, Tensor>, names: string[], relu: boolean, rows?: number[]): Linear {
  const ws = names.map((n) => t.get(`${n}.weight`)!);
  const inFeatures = ws[0].shape[1];
  const picked = names.flatMap((_, k) => (rows && k === 0 ? rows : all(ws[k].shape[0])).map((o) => [k, o] as const));
  const weight = new Float32Array(picked.length * inFeatures);
  picked.forEach(([k, o], i) => weight.set(ws[k].data.subarray(o * inFeatures, (o + 1) * inFeatures), i * inFeatures));
  const bias = Float32Array.from(picked, ([k, o]) => t.get(`${names[k]}.bias`)!.data[o]);
  return new Linear(ctx, inFeatures, picked.length, weight, bias, relu, names.join('+'));
}

export function deconv(ctx: GpuContext, t: Map<string, Tensor>, relu: boolean): ConvTranspose2d {
  const w = t.get('roi_heads.mask_predictor.conv5_mask.weight')!;
  const [cin, cout] = w.shape;
  return new ConvTranspose2d(ctx, { cin, cout, scale: 2, relu }, w.data, t.get('roi_heads.mask_predictor.conv5_mask.bias')!.data, 'conv5_mask');
}

/** The transposed conv as the 1x1 conv to rows (o, ky, kx) for the kept output channels `rows`. */
export function deconvAs1x1(ctx: GpuContext, t: Map<string, Tensor>, rows: number[]): Conv2d {
  const w = t.get('roi_heads.mask_predictor.conv5_mask.weight')!;
  const b = t.get('roi_heads.mask_predictor.conv5_mask.bias')!.data;
  const [cin, cout] = w.shape;
  const gemm = reorderConvTransposeWeight(w.data, cin, cout, 2);
  const weight = new Float32Array(rows.length * 4 * cin);
  rows.forEach((o, i) => weight.set(gemm.subarray(o * 4 * cin, (o + 1) * 4 * cin), i * 4 * cin));
  return new Conv2d(ctx, { cin, cout: rows.length * 4, kernel: [1, 1] }, weight, Float32Array.from({ length: rows.length * 4 }, (_, r) => b[rows[Math.floor(r / 4)]]), 'conv5_mask as 1x1');
}

/**
 * Writes a refit of layers with their own bias (stacked `names` share the solution's rows, in
 * order). Zero filters (carrier channels) stay. A transposed conv's rows are (o, ky, kx): its
 * weight [Cin][Cout][2][2] takes them back, its bias the mean of each channel's 4 intercepts.
 */
export function writeBiasFit(t: Map<string, Tensor>, names: string[], kind: 'conv' | 'linear' | 'deconv', s: RidgeSolution): LayerFit {
  const features = s.weights.length / names.reduce((a, n) => a + (kind === 'deconv' ? t.get(`${n}.weight`)!.shape[1] * 4 : t.get(`${n}.weight`)!.shape[0]), 0);
  const per = features - 1;
  let row = 0;
  let gain = 0;
  let outputs = 0;
  for (const name of names) {
    const w = t.get(`${name}.weight`)!;
    const b = t.get(`${name}.bias`)!;
    const nw = new Float32Array(w.data);
    const nb = new Float32Array(b.data);
    if (kind === 'deconv') {
      const [cin, cout] = w.shape;
      for (let o = 0; o < cout; o++) {
        let bias = 0;
        for (let tap = 0; tap < 4; tap++) {
          const r = row + o * 4 + tap;
          for (let i = 0; i < cin; i++) nw[(i * cout + o) * 4 + tap] = s.weights[r * features + i];
          bias += s.weights[r * features + per] / 4;
          gain += s.gain[r];
        }
        nb[o] = bias;
      }
      row += cout * 4;
      outputs += cout;
    } else {
      const cout = w.shape[0];
      const fixed = zeroFilters(w.data, cout);
      for (let o = 0; o < cout; o++) {
        if (fixed[o]) continue;
        for (let i = 0; i < per; i++) nw[o * per + i] = s.weights[(row + o) * features + i];
        nb[o] = s.weights[(row + o) * features + per];
        gain += s.gain[row + o];
      }
      row += cout;
      outputs += cout;
    }
    if (!nw.every(Number.isFinite) || !nb.every(Number.isFinite)) throw nonFinite(`the least-squares refit of '${name}' is not finite`);
    t.set(`${name}.weight`, { ...w, data: nw });
    t.set(`${name}.bias`, { ...b, data: nb });
  }
  return { layer: names.join(' + '), inputs: per, outputs, gain: gain / s.positions };
}
