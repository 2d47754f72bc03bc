// COCO metrics (eval/coco.ts) on hand-computed cases, bit-for-bit against tools/eval_torchvision.py's
// numbers on torchvision's own predictions, and `maskgpu eval` end to end: the engine's detections
// score exactly what torchvision's score on the same images.

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeRle, type RleMask } from '../engine/rle.ts';
import { CocoFormatError, decodeCompressedCounts, evaluateCoco, parseCocoDataset, type CocoDataset, type EvalDetection } from '../eval/coco.ts';
import { loadSplit, parsePredictions } from '../io/split.ts';

const test = suite('COCO evaluation');
const H = 10;
const W = 10;

/** A 10x10 mask with rows [y0, y1) and columns [x0, x1) set. */
function rect(y0: number, y1: number, x0: number, x1: number): { mask: RleMask; bbox: [number, number, number, number] } {
  const m = new Uint8Array(H * W);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * W + x] = 1;
  return { mask: encodeRle(m, H, W), bbox: [x0, y0, x1 - x0, y1 - y0] };
}

const g1 = rect(0, 4, 0, 4);
const g2 = rect(6, 10, 6, 10);
const fp = rect(0, 4, 6, 10);

function dataset(gts: { cat: number; r: ReturnType<typeof rect> }[], images = 1): CocoDataset {
  return parseCocoDataset({
    images: Array.from({ length: images }, (_, i) => ({ id: i + 1, file_name: `${i}.png`, width: W, height: H })),
    categories: [{ id: 1, name: 'a' }, { id: 2, name: 'b' }],
    annotations: gts.map((g, i) => ({ id: i + 1, image_id: 1, category_id: g.cat, bbox: g.r.bbox, segmentation: g.r.mask })),
  });
}

const det = (cat: number, score: number, r: ReturnType<typeof rect>, imageId = 1): EvalDetection => ({ imageId, categoryId: cat, score, bbox: r.bbox, mask: r.mask });
const close = (a: number, b: number, what: string, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test('TP, FP, TP: precision 1 to recall 0.5 (51 of 101 points), then 2/3; a class without ground truth does not count', () => {
  const m = evaluateCoco(dataset([{ cat: 1, r: g1 }, { cat: 1, r: g2 }]), [det(1, 0.9, g1), det(1, 0.8, fp), det(1, 0.7, g2)]);
  const want = (51 * 1 + 50 * (2 / 3)) / 101;
  for (const k of ['maskAP', 'maskAP50', 'maskAP75', 'boxAP', 'boxAP50', 'boxAP75'] as const) close(m[k], want, k);
  assert.is(m.meanIoU, 1);
  assert.is(m.recall50, 1);
  assert.is(m.detections, 3);
});

test('a partial mask (IoU 0.75) counts at thresholds 0.50..0.75 only; a wrong-class detection is a miss', () => {
  const part = rect(0, 3, 0, 4);
  const m = evaluateCoco(dataset([{ cat: 1, r: g1 }, { cat: 1, r: g2 }]), [det(1, 0.9, part), det(2, 0.8, g2)]);
  close(m.maskAP50, 51 / 101, 'maskAP50');
  close(m.maskAP75, 51 / 101, 'maskAP75');
  close(m.maskAP, (6 / 10) * (51 / 101), 'maskAP');
  close(m.boxAP, (6 / 10) * (51 / 101), 'boxAP (box IoU 12/16 too)');
  close(m.meanIoU, 0.75, 'meanIoU');
  assert.is(m.recall50, 0.5);
});

test('ranking across images is by score: a high-scoring false positive in another image costs precision', () => {
  // Image 1: g1 found at 0.6. Image 2 (no ground truth): a false positive at 0.9 ranks first.
  const m = evaluateCoco(dataset([{ cat: 1, r: g1 }], 2), [det(1, 0.6, g1, 1), det(1, 0.9, fp, 2)]);
  // Ranked FP, TP: precision 1/2 at recall 1, so 0.5 at every recall point.
  close(m.maskAP50, 0.5, 'maskAP50');
  // The same detections with the scores swapped: TP first, precision 1 at recall 1.
  const swapped = evaluateCoco(dataset([{ cat: 1, r: g1 }], 2), [det(1, 0.9, g1, 1), det(1, 0.6, fp, 2)]);
  close(swapped.maskAP50, 1, 'maskAP50 (TP first)');
});

test('at most 100 detections per image and class are scored (lowest scores dropped)', () => {
  const many = Array.from({ length: 100 }, (_, i) => det(1, 0.9 - i * 0.001, fp));
  const m = evaluateCoco(dataset([{ cat: 1, r: g1 }]), [...many, det(1, 0.01, g1)]);
  assert.is(m.maskAP50, 0, 'the 101st detection (the only true positive) is not scored');
  const m99 = evaluateCoco(dataset([{ cat: 1, r: g1 }]), [...many.slice(0, 99), det(1, 0.01, g1)]);
  close(m99.maskAP50, 1 / 100, 'precision 1/100 at recall 1', 1e-15);
});

test('no detections: AP 0; two ground truths matched once each by duplicates: the duplicate is a false positive', () => {
  const none = evaluateCoco(dataset([{ cat: 1, r: g1 }]), []);
  assert.is(none.maskAP, 0);
  assert.is(none.meanIoU, 0);
  const dup = evaluateCoco(dataset([{ cat: 1, r: g1 }]), [det(1, 0.9, g1), det(1, 0.8, g1)]);
  close(dup.maskAP50, 1, 'the duplicate ranks after the match: precision stays 1 up to recall 1');
  const dupFirst = evaluateCoco(dataset([{ cat: 1, r: g1 }]), [det(1, 0.9, fp), det(1, 0.8, g1), det(1, 0.7, g1)]);
  close(dupFirst.maskAP50, 0.5, 'FP, TP, FP: precision 1/2 at recall 1');
});

test('compressed RLE strings decode as pycocotools (rleFrString), including negative deltas', () => {
  assert.equal(decodeCompressedCounts('325'), [3, 2, 5]);
  assert.equal(decodeCompressedCounts('325OO'), [3, 2, 5, 1, 4]);
  assert.throws(() => decodeCompressedCounts('3\x7f'), (e: Error) => e instanceof CocoFormatError && /invalid character/.test(e.message));
});

test('bad annotation files are refused with the reason', () => {
  const base = { images: [{ id: 1, file_name: 'a.png', width: W, height: H }], categories: [{ id: 1, name: 'a' }] };
  const ann = (a: object) => ({ ...base, annotations: [{ id: 7, image_id: 1, category_id: 1, bbox: [0, 0, 4, 4], segmentation: g1.mask, ...a }] });
  const cases: [unknown, RegExp][] = [
    [{}, /needs "images", "annotations" and "categories"/],
    [ann({ segmentation: [[0, 0, 4, 0, 4, 4]] }), /polygons are not supported/],
    [ann({ image_id: 3 }), /annotation 7: image_id 3 is not in "images"/],
    [ann({ category_id: 9 }), /category_id 9 is not in "categories"/],
    [ann({ segmentation: { size: [5, 5], counts: [25] } }), /mask size 5x5 differs from image 1's 10x10/],
    [ann({ segmentation: { size: [10, 10], counts: [50] } }), /counts sum to 50/],
    [ann({ iscrowd: 1 }), /iscrowd annotations are not supported/],
    [ann({ bbox: [0, 0, 4] }), /bbox must be \[x, y, width, height\]/],
  ];
  for (const [json, re] of cases) assert.throws(() => parseCocoDataset(json), (e: Error) => e instanceof CocoFormatError && re.test(e.message), String(re));
  assert.throws(() => parsePredictions([{ image_id: 1 }], 'p.json'), (e: Error) => /p.json: entry 0 needs/.test(e.message));
});

test("the same numbers as tools/eval_torchvision.py on torchvision's predictions (20 test images)", async () => {
  const split = await loadSplit('data/shapes/test', 20);
  const preds = parsePredictions(JSON.parse(readFileSync('tests/fixtures/eval/tv-predictions-20.json', 'utf8')), 'fixture');
  const want = JSON.parse(readFileSync('tests/fixtures/eval/tv-metrics-20.json', 'utf8'));
  const got = evaluateCoco(split.dataset, preds);
  for (const k of Object.keys(want)) close((got as unknown as Record<string, number>)[k], want[k], k);
});

test("maskgpu eval: the engine's detections score exactly torchvision's on the same images", () => {
  // maskgpu's cache folder (the kernel record) is the test's own.
  const env = { ...process.env, MASKGPU_CACHE_DIR: mkdtempSync(join(tmpdir(), 'maskgpu-eval-cache-')) };
  const run = (...a: string[]) => spawnSync(process.execPath, ['bin/maskgpu.mjs', 'eval', '--limit', '4', '--json', ...a], { encoding: 'utf8', env });
  const engine = run();
  assert.is(engine.status, 0, engine.stderr);
  const tv = run('--predictions', 'tests/fixtures/eval/tv-predictions-20.json');
  assert.is(tv.status, 0, tv.stderr);
  const a = JSON.parse(engine.stdout);
  const b = JSON.parse(tv.stdout);
  console.log(`    engine on 4 test images: mask AP ${a.maskAP.toFixed(4)}, box AP ${a.boxAP.toFixed(4)}, mean IoU ${a.meanIoU.toFixed(4)}, ${a.detections} detections`);
  assert.is(a.detections, b.detections);
  for (const k of Object.keys(b)) close(a[k], b[k], k, 1e-6);
  const bad = run('--data', 'no/such/dir');
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /annotations.json: not found; --data must be a folder with a COCO annotations.json/);
});

test.run();
