// The bundled library (dist/maskgpu.js as `npm run build` makes it) runs conv2d inside headless
// Chromium on a localhost page; the result is compared with the float64 reference here in Node.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bundle } from '../tools/build.mjs';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium, serve } from './browser.ts';
import { goldenCase, goldenWeightBytes } from './golden.ts';
import { rleIou } from '../engine/rle.ts';
import { normal, uniform } from './random.ts';
import { conv2dRef } from './reference/conv2d.ts';
import { assertClose, f32Accum } from './tolerance.ts';

const test = suite('browser');

test('the bundle runs a 3x3 stride-2 conv with residual + ReLU in headless Chromium', async () => {
  const out = await bundle(join(mkdtempSync(join(tmpdir(), 'maskgpu-')), 'maskgpu.js'));
  const js = readFileSync(out, 'utf8');
  assert.not.match(js, /from ["']node:/, 'no Node built-ins in the browser bundle');
  const page = '<!doctype html><meta charset="utf-8"><title>maskgpu conv test</title><p>maskgpu</p>';
  const server = await serve({ '/': ['text/html', page], '/maskgpu.js': ['text/javascript', js] });
  const browser = await launchChromium();
  try {
    const tab = await browser.newPage();
    const logs: string[] = [];
    tab.on('console', (m) => logs.push(m.text()));
    await tab.goto(server.url);

    const c = { batch: 1, cin: 5, cout: 7, h: 9, w: 11, kh: 3, kw: 3, stride: [2, 2] as [number, number], padding: [1, 1] as [number, number], relu: true };
    const x = normal(900, c.cin * c.h * c.w);
    const w = normal(901, c.cout * c.cin * 9, Math.sqrt(2 / (c.cin * 9)));
    const b = uniform(902, c.cout, -0.5, 0.5);
    const res = normal(903, c.cout * 5 * 6); // output is 5x6
    const want = conv2dRef(c, x, w, b, res);

    const result = await tab.evaluate(
      async (args) => {
        const url: string = '/maskgpu.js'; // resolved by the page, not by Node
        const m = (await import(url)) as typeof import('../index.ts');
        const ctx = await m.GpuContext.create();
        const conv = new m.Conv2d(ctx, { cin: args.cin, cout: args.cout, kernel: [3, 3], stride: [2, 2], padding: [1, 1], relu: true, residual: true }, new Float32Array(args.w), new Float32Array(args.b));
        const shape = { batch: 1, h: args.h, w: args.w_ };
        const o = conv.outputShape(shape);
        const rec = new m.Recorder(ctx, 'browser conv');
        const input = rec.input('x', new Float32Array(args.x), [args.cin, args.h, args.w_]);
        const residual = rec.input('r', new Float32Array(args.res), [args.cout, o.h, o.w]);
        const values = await ctx.checked('browser conv', async () => {
          const output = conv.record(rec, input, { residual });
          rec.submit();
          return Array.from(await ctx.readF32(output.buffer, args.cout * o.h * o.w));
        });
        rec.destroy();
        const report = ctx.report;
        ctx.destroy();
        return { values, oh: o.h, ow: o.w, adapter: m.describeAdapter(report) };
      },
      { cin: c.cin, cout: c.cout, h: c.h, w_: c.w, x: Array.from(x), w: Array.from(w), b: Array.from(b), res: Array.from(res) },
    );
    console.log(`    browser adapter: ${result.adapter}`);
    assert.is(result.oh, want.oh);
    assert.is(result.ow, want.ow);
    assertClose(result.values, want.data, f32Accum, 'conv2d in Chromium');
    if (logs.some((l) => /error/i.test(l))) console.log(`    page console: ${logs.join(' | ')}`);
  } finally {
    await browser.close();
    await server.close();
  }
});

test('Mask R-CNN (golden model) segments an image in Chromium like torchvision', async () => {
  const out = await bundle(join(mkdtempSync(join(tmpdir(), 'maskgpu-')), 'maskgpu.js'));
  const g = goldenCase(2);
  const server = await serve({
    '/': ['text/html', '<!doctype html><meta charset="utf-8"><title>maskgpu</title>'],
    '/maskgpu.js': ['text/javascript', readFileSync(out, 'utf8')],
    '/model.safetensors': ['application/octet-stream', goldenWeightBytes()],
  });
  const browser = await launchChromium();
  try {
    const tab = await browser.newPage();
    await tab.goto(server.url);
    const result = await tab.evaluate(
      async (args) => {
        const url: string = '/maskgpu.js';
        const m = (await import(url)) as typeof import('../index.ts');
        const progress: number[] = [];
        const file = await m.fetchSafetensors('/model.safetensors', { ...m.maskrcnnParseOptions, onProgress: (loaded) => progress.push(loaded) });
        const model = await m.loadMaskRCNN(undefined, file);
        const r = await model.segment({ width: args.width, height: args.height, data: new Uint8Array(args.data) });
        model.destroy();
        return { detections: r.detections, ms: r.timingsMs.total, progressCalls: progress.length, adapter: `${r.adapter.vendor} ${r.adapter.architecture}` };
      },
      { width: g.image.width, height: g.image.height, data: Array.from(g.image.data) },
    );
    console.log(`    ${result.detections.length} detections in ${result.ms.toFixed(0)} ms on ${result.adapter}`);
    assert.ok(result.progressCalls >= 2, 'download progress reported');
    const want = g.json.detections;
    assert.is(result.detections.length, want.length);
    want.forEach((w, i) => {
      const d = result.detections[i];
      assert.is(d.label, w.label, `detection ${i} label`);
      for (let k = 0; k < 4; k++) assert.ok(Math.abs(d.box[k] - w.box[k]) < 1, `detection ${i} box ${d.box} vs ${w.box}`);
      assert.ok(rleIou(d.mask, w.mask) > 0.98, `detection ${i} mask`);
    });
  } finally {
    await browser.close();
    await server.close();
  }
});

test.run();
