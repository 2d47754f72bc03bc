// `maskgpu segment` end to end: JSON in the documented format, an overlay PNG, and clear errors
// for bad weights and bad images (the other images of the same call still get processed). Output
// files: segment and prune refuse to overwrite without --force, never write over their inputs
// (by any name) or into a directory, and write atomically (tests/weights.test.ts fails a write
// midway; lavapipe itself dies under a file-size limit, so it cannot be done here).

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodePng } from '../io/image.ts';
import { rleArea } from '../engine/rle.ts';

const GOLDEN = 'tests/fixtures/golden';
// maskgpu's cache folder (kernel record, background compiles) is the test's own, not the user's.
const CACHE_ENV = { ...process.env, MASKGPU_CACHE_DIR: mkdtempSync(join(tmpdir(), 'maskgpu-cli-cache-')) };
const run = (...args: string[]) => spawnSync(process.execPath, ['bin/maskgpu.mjs', 'segment', ...args], { encoding: 'utf8', env: CACHE_ENV });

const test = suite('maskgpu segment');

test('writes detection JSON (COCO RLE) and an overlay PNG per image', () => {
  const out = mkdtempSync(join(tmpdir(), 'maskgpu-cli-'));
  const r = run(`${GOLDEN}/image_0.png`, `${GOLDEN}/image_2.png`, '--weights', `${GOLDEN}/model.safetensors`, '--out', out, '--verbose');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /GPU memory: peak [\d.]+ MiB/);
  const json = JSON.parse(readFileSync(join(out, 'image_0.json'), 'utf8'));
  const golden = JSON.parse(readFileSync(`${GOLDEN}/golden_0.json`, 'utf8'));
  assert.equal(json.image, { width: 200, height: 150 });
  assert.is(json.detections.length, golden.detections.length);
  for (const d of json.detections) {
    assert.is(d.box.length, 4);
    assert.ok(Number.isInteger(d.label) && typeof d.labelName === 'string' && d.score > 0.05 && d.score <= 1);
    assert.equal(d.mask.size, [150, 200]);
    assert.ok(rleArea(d.mask) >= 0 && d.mask.counts.reduce((a: number, b: number) => a + b, 0) === 150 * 200);
  }
  assert.ok(json.timingsMs.total > 0 && json.adapter.limits.maxStorageBufferBindingSize > 0);
  const png = decodePng(new Uint8Array(readFileSync(join(out, 'image_0.png'))));
  assert.equal([png.width, png.height], [200, 150]);
  assert.ok(existsSync(join(out, 'image_2.json')));
});

test('--score-thresh filters like box_score_thresh', () => {
  const out = mkdtempSync(join(tmpdir(), 'maskgpu-cli-'));
  const r = run(`${GOLDEN}/image_0.png`, '--weights', `${GOLDEN}/model.safetensors`, '--out', out, '--score-thresh', '0.9');
  assert.is(r.status, 0, r.stderr);
  const json = JSON.parse(readFileSync(join(out, 'image_0.json'), 'utf8'));
  assert.ok(json.detections.length > 0 && json.detections.every((d: { score: number }) => d.score > 0.9));
});

test('bad weights files are refused with the reason', () => {
  const dir = mkdtempSync(join(tmpdir(), 'maskgpu-cli-'));
  const bytes = readFileSync(`${GOLDEN}/model.safetensors`);
  writeFileSync(join(dir, 'truncated.safetensors'), bytes.subarray(0, bytes.length - 1000));
  writeFileSync(join(dir, 'image.safetensors'), readFileSync(`${GOLDEN}/image_0.png`));
  const cases: Array<[string, RegExp]> = [
    [join(dir, 'missing.safetensors'), /missing\.safetensors/],
    [join(dir, 'truncated.safetensors'), /truncated|past the end|out of range|data/i],
    [join(dir, 'image.safetensors'), /not a safetensors file/i],
  ];
  for (const [weights, message] of cases) {
    const r = run(`${GOLDEN}/image_0.png`, '--weights', weights, '--out', dir);
    assert.is(r.status, 1, `${weights}: exit ${r.status}`);
    assert.match(r.stderr, message);
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace for a user error');
  }
});

test('a bad image fails alone; the others are still segmented', () => {
  const dir = mkdtempSync(join(tmpdir(), 'maskgpu-cli-'));
  writeFileSync(join(dir, 'broken.png'), 'not an image');
  const out = join(dir, 'out');
  const r = run(join(dir, 'broken.png'), `${GOLDEN}/image_2.png`, '--weights', `${GOLDEN}/model.safetensors`, '--out', out);
  assert.is(r.status, 1);
  assert.match(r.stderr, /broken\.png: .*not a PNG or JPEG/);
  assert.ok(existsSync(join(out, 'image_2.json')));
});

test('without --weights the bundled model segments the bundled sample (the README main job)', () => {
  const out = mkdtempSync(join(tmpdir(), 'maskgpu-cli-'));
  const r = run('models/samples/shapes_1.png', '--out', out);
  assert.is(r.status, 0, r.stderr);
  const json = JSON.parse(readFileSync(join(out, 'shapes_1.json'), 'utf8'));
  const confident = json.detections.filter((d: { score: number }) => d.score > 0.9);
  // The sample holds 5 shapes (a star, a ring, a square and two triangles) and a distractor line.
  assert.ok(confident.length >= 4 && confident.length <= 6, `${confident.length} confident detections`);
  const names = new Set(confident.map((d: { labelName: string }) => d.labelName));
  for (const n of ['triangle', 'ring', 'square', 'star']) assert.ok(names.has(n), `found a ${n}`);
});

test('the README main job runs twice in a row (it passes --force)', () => {
  const readme = readFileSync('README.md', 'utf8');
  const command = /npx maskgpu segment ([^\n&|;]*)/.exec(readme)?.[1].trim().split(/\s+/);
  assert.ok(command && command.includes('--force'), `README command: ${command?.join(' ')}`);
  const out = mkdtempSync(join(tmpdir(), 'maskgpu-cli-'));
  const args = command!.map((a, i) => (command![i - 1] === '--out' ? out : a));
  for (const attempt of [1, 2]) {
    const r = run(...args);
    assert.is(r.status, 0, `run ${attempt}: ${r.stderr}`);
  }
  assert.equal(readdirSync(out).sort(), ['shapes_2.json', 'shapes_2.png']);
});

test('existing outputs are refused before any work without --force, and left as they were', () => {
  const out = mkdtempSync(join(tmpdir(), 'maskgpu-cli-'));
  writeFileSync(join(out, 'image_0.png'), 'mine');
  const r = run(`${GOLDEN}/image_0.png`, `${GOLDEN}/image_2.png`, '--weights', `${GOLDEN}/model.safetensors`, '--out', out);
  assert.is(r.status, 1);
  assert.match(r.stderr, new RegExp(`maskgpu segment: ${out}/image_0\\.png already exists; pass --force to overwrite, or choose another --out folder`));
  assert.equal(readdirSync(out), ['image_0.png'], 'nothing written, not even for the other image');
  assert.is(readFileSync(join(out, 'image_0.png'), 'utf8'), 'mine');
  const collide = run(`${GOLDEN}/image_0.png`, 'elsewhere/image_0.jpg', '--out', out, '--force');
  assert.is(collide.status, 1);
  assert.match(collide.stderr, /image_0\.png and elsewhere\/image_0\.jpg would both be written to .*image_0\.json and .*image_0\.png; segment them with different --out folders/);
});

test('segment never writes over an input image or into a directory, even with --force', () => {
  const dir = mkdtempSync(join(tmpdir(), 'maskgpu-cli-'));
  const image = join(dir, 'image_0.png');
  writeFileSync(image, readFileSync(`${GOLDEN}/image_0.png`));
  const r = run(image, '--out', dir, '--force');
  assert.is(r.status, 1);
  assert.match(r.stderr, new RegExp(`${dir}/image_0\\.png is the input image ${dir}/image_0\\.png: segment never writes over its inputs`));
  assert.ok(readFileSync(image).equals(readFileSync(`${GOLDEN}/image_0.png`)), 'the input is unchanged');
  mkdirSync(join(dir, 'out', 'image_2.png'), { recursive: true });
  const d = run(`${GOLDEN}/image_2.png`, '--out', join(dir, 'out'), '--force');
  assert.is(d.status, 1);
  assert.match(d.stderr, /out\/image_2\.png is a directory, where an output file would go/);
  assert.equal(readdirSync(join(dir, 'out')), ['image_2.png']);
});

test('prune never writes over its input (same path, symlink, hard link, --report), even with --force', () => {
  const dir = mkdtempSync(join(tmpdir(), 'maskgpu-cli-'));
  const input = join(dir, 'in.safetensors');
  const original = readFileSync(`${GOLDEN}/model.safetensors`);
  writeFileSync(input, original);
  symlinkSync(input, join(dir, 'symlink.safetensors'));
  linkSync(input, join(dir, 'hardlink.safetensors'));
  const prune = (...args: string[]) => spawnSync(process.execPath, ['bin/maskgpu.mjs', 'prune', '--weights', input, '--ratio', '0.3', ...args], { encoding: 'utf8' });
  for (const out of [input, join(dir, '.', 'in.safetensors'), join(dir, 'symlink.safetensors'), join(dir, 'hardlink.safetensors')]) {
    const r = prune('--out', out, '--force');
    assert.is(r.status, 1, out);
    assert.match(r.stderr, /--out .* is the input weights file: write the result somewhere else \(the input is never overwritten\)/);
  }
  const report = prune('--out', join(dir, 'x.safetensors'), '--report', join(dir, 'hardlink.safetensors'), '--force');
  assert.match(report.stderr, /--report .* is the input weights file/);
  mkdirSync(join(dir, 'folder'));
  assert.match(prune('--out', join(dir, 'folder'), '--force').stderr, /--out .*folder is a directory: give a file name/);
  writeFileSync(join(dir, 'taken.safetensors'), 'keep me');
  const taken = prune('--out', join(dir, 'taken.safetensors'));
  assert.is(taken.status, 1);
  assert.match(taken.stderr, /taken\.safetensors already exists; pass --force to overwrite it/);
  assert.is(readFileSync(join(dir, 'taken.safetensors'), 'utf8'), 'keep me');
  assert.ok(readFileSync(input).equals(original), 'the input bytes are unchanged');
  assert.equal(readdirSync(dir).sort(), ['folder', 'hardlink.safetensors', 'in.safetensors', 'symlink.safetensors', 'taken.safetensors']);
});

test('usage errors', () => {
  assert.match(run().stderr, /no image given/);
  assert.match(run('x.png', '--frobnicate').stderr, /unknown option '--frobnicate'/);
  assert.match(run('x.png', '--min-size', 'abc').stderr, /--min-size needs a number/);
});

test.run();
