// The runtime around the kernels: WGSL specialisation and reflection, device acquisition and its
// report, error scopes, device loss, and buffer bookkeeping.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { acquireDevice, NoAdapterError } from '../engine/device.ts';
import { GpuContext, GpuError } from '../engine/gpu.ts';
import { packUniforms, parseBindings, parseUniformStruct, specialize } from '../engine/wgsl.ts';
import conv2dSource from '../shaders/conv2d.wgsl';
import { gpuSuite } from './harness.ts';

const wgsl = suite('wgsl reflection');
wgsl('specialize rewrites const declarations and keeps the rest', () => {
  const src = 'const TM: u32 = 4u;\nconst RELU: bool = false;\nconst S: f32 = 1.0f;\nfn f() {}';
  const out = specialize(src, { TM: 8, RELU: true, S: 0.5 });
  assert.ok(out.includes('const TM: u32 = 8u;'));
  assert.ok(out.includes('const RELU: bool = true;'));
  assert.ok(out.includes('const S: f32 = 0.500000000f;'));
  assert.ok(out.includes('fn f() {}'));
});
wgsl('specialize rejects unknown names and values the type cannot hold', () => {
  assert.throws(() => specialize('const A: u32 = 1u;', { B: 1 }), /no 'const B/);
  assert.throws(() => specialize('const A: u32 = 1u;', { A: -1 }), /u32 cannot hold -1/);
  assert.throws(() => specialize('const A: u32 = 1u;', { A: 1.5 }), /u32 cannot hold 1.5/);
});
wgsl('bindings and the Params struct are read from conv2d.wgsl', () => {
  const b = parseBindings(conv2dSource);
  assert.equal(
    b.map((x) => `${x.binding}:${x.name}:${x.kind}`),
    ['0:params:uniform', '1:input:read-only-storage', '2:weight:read-only-storage', '3:bias:read-only-storage', '4:residual:read-only-storage', '5:output:storage', '6:batch_limit:read-only-storage'],
  );
  const layout = parseUniformStruct(conv2dSource, 'Params');
  assert.equal(layout.fields.length, 17);
  assert.equal(layout.byteSize, 80);
  assert.equal(layout.fields[12], { name: 'dil_w', type: 'u32', offset: 48 });
  assert.equal(layout.fields[13], { name: 'flags', type: 'u32', offset: 52 });
  assert.equal(layout.fields[16], { name: 'shuffle', type: 'u32', offset: 64 });
});
wgsl('packUniforms packs by name and refuses missing, extra or out-of-range fields', () => {
  const layout = parseUniformStruct('struct P { a: u32, b: f32, c: i32, }', 'P');
  const view = new DataView(packUniforms(layout, { a: 7, b: 0.25, c: -3 }));
  assert.is(view.getUint32(0, true), 7);
  assert.is(view.getFloat32(4, true), 0.25);
  assert.is(view.getInt32(8, true), -3);
  assert.throws(() => packUniforms(layout, { a: 1, b: 2 }), /'c' was not given/);
  assert.throws(() => packUniforms(layout, { a: 1, b: 2, c: 3, d: 4 }), /not in the WGSL struct: d/);
  assert.throws(() => packUniforms(layout, { a: -1, b: 2, c: 3 }), /not a u32/);
});
wgsl.run();

const device = gpuSuite('device');
device.test('reports the adapter, its limits and optional features', (ctx) => {
  const r = ctx.report;
  assert.ok(r.limits.maxStorageBufferBindingSize >= 128 * 1024 * 1024, `maxStorageBufferBindingSize ${r.limits.maxStorageBufferBindingSize}`);
  assert.ok(r.limits.maxComputeWorkgroupStorageSize >= 16384);
  assert.is(ctx.device.limits.maxStorageBufferBindingSize, r.limits.maxStorageBufferBindingSize, 'device got the adapter limit, not the default');
  for (const f of r.features) assert.ok(ctx.device.features.has(f), `feature ${f} enabled on the device`);
  assert.ok(['node-dawn', 'browser'].includes(r.runtime));
  assert.ok(`${r.vendor}${r.description}`.length > 0, 'adapter has a name');
});
device.test('validation errors inside checked() become exceptions', async (ctx) => {
  let message = '';
  try {
    await ctx.checked('bad buffer', () => {
      ctx.device.createBuffer({ size: 16, usage: 0x80 | 0x01 }); // STORAGE | MAP_READ is invalid
    });
  } catch (e) {
    message = (e as Error).message;
  }
  assert.match(message, /bad buffer: WebGPU validation error/);
});
device.test('buffer bookkeeping counts live buffers and bytes', (ctx) => {
  const before = ctx.memory;
  const a = ctx.createBuffer('a', 100);
  const b = ctx.createBuffer('b', 1000);
  assert.is(ctx.memory.buffers, before.buffers + 2);
  assert.is(ctx.memory.bytes, before.bytes + 112 + 1008);
  ctx.release(a);
  ctx.release(b);
  ctx.release(b); // twice is harmless
  assert.equal(ctx.memory.buffers, before.buffers);
  assert.equal(ctx.memory.bytes, before.bytes);
});
device.test('a buffer over maxBufferSize is refused with the limit named', (ctx) => {
  assert.throws(() => ctx.createBuffer('huge', ctx.device.limits.maxBufferSize + 16), /over this adapter's maxBufferSize/);
});
device.run();

const acquire = suite('device acquisition');
acquire('no usable adapter: a NoAdapterError that says what to install', async () => {
  await acquireDevice({ dawnFlags: ['adapter=NoSuchAdapter'] }).then(
    () => assert.unreachable('no adapter should be found'),
    (e: Error) => {
      assert.instance(e, NoAdapterError);
      assert.match(e.message, /Vulkan driver/);
      assert.match(e.message, /lavapipe/);
    },
  );
});
acquire('a Vulkan loader with no driver at all gives the same error, not a crash', () => {
  const script = `import('./engine/device.ts').then(m => m.acquireDevice()).then(() => console.log('FOUND'), e => console.log(e.name + ': ' + e.message))`;
  const r = spawnSync(process.execPath, ['--import', './tools/register.mjs', '--input-type=module', '-e', script], {
    env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' },
    encoding: 'utf8',
  });
  assert.match(r.stdout, /NoAdapterError: .*Vulkan driver/);
});
acquire.run();

const cli = suite('maskgpu command');
cli('info --json prints the adapter report; unknown commands exit 2 with the usage', () => {
  const info = spawnSync(process.execPath, ['bin/maskgpu.mjs', 'info', '--json'], { encoding: 'utf8' });
  assert.is(info.status, 0, info.stderr);
  const report = JSON.parse(info.stdout);
  assert.ok(report.limits.maxStorageBufferBindingSize > 0);
  assert.ok(Array.isArray(report.features));
  const bad = spawnSync(process.execPath, ['bin/maskgpu.mjs', 'frobnicate'], { encoding: 'utf8' });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /unknown command 'frobnicate'/);
  assert.match(bad.stderr, /usage: maskgpu/);
});
cli.run();

const lost = suite('device loss');
lost('a destroyed device makes later calls fail with a clear error', async () => {
  const ctx = await GpuContext.create();
  const buf = ctx.createBuffer('x', 64);
  ctx.device.destroy();
  await ctx.device.lost;
  assert.throws(() => ctx.createBuffer('y', 64), (e: Error) => e instanceof GpuError && /device was lost/.test(e.message) && /rebuild/.test(e.message));
  await ctx.read(buf).then(
    () => assert.unreachable('read after loss should reject'),
    (e: Error) => assert.match(e.message, /device was lost/),
  );
});
lost.run();
