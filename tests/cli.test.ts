// `maskgpu segment` end to end: JSON in the documented format, an overlay PNG, and clear errors
// for bad weights and bad images (the other images of the same call still get processed).

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeImage } from '../bin/image-io.ts';
import { rleArea } from '../engine/rle.ts';

const GOLDEN = 'tests/fixtures/golden';
const run = (...args: string[]) => spawnSync(process.execPath, ['bin/maskgpu.mjs', 'segment', ...args], { encoding: 'utf8' });
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
  const png = decodeImage(new Uint8Array(readFileSync(join(out, 'image_0.png'))));
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
  const r = run(join(dir, 'broken.png'), `${GOLDEN}/image_2.png`, '--weights', `${GOLDEN}/model.safetensors`, '--out', dir);
  assert.is(r.status, 1);
  assert.match(r.stderr, /broken\.png: .*not a PNG or JPEG/);
  assert.ok(existsSync(join(dir, 'image_2.json')));
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

test('usage errors', () => {
  assert.match(run().stderr, /no image given/);
  assert.match(run('x.png', '--frobnicate').stderr, /unknown option '--frobnicate'/);
  assert.match(run('x.png', '--min-size', 'abc').stderr, /--min-size needs a number/);
});

test.run();
