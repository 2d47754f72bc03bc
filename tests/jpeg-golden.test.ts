// JPEG photos end to end against torchvision: the golden model (seeded random weights) on JPEG
// copies of the golden images (baseline 4:4:4/4:2:0/4:2:2, progressive 4:2:0/4:2:2, grayscale),
// decoded by Pillow and run by torchvision 0.14.1 (tools/make_jpeg_golden.py). maskgpu decodes the
// same files (io/image.ts, sharp) and must give the same detections (tests/tolerance.ts
// jpegGoldenDetections): with the decoder byte-identical to Pillow (tests/jpeg.test.ts) only the
// engine's float32 rounding remains, as on PNGs.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as assert from 'uvu/assert';
import { loadMaskRCNN } from '../engine/maskrcnn/model.ts';
import { compareDetections, type DetectionLike } from '../eval/match.ts';
import { readImageFile } from '../io/image.ts';
import { goldenWeightBytes } from './golden.ts';
import { gpuSuite } from './harness.ts';
import { jpegGoldenDetections } from './tolerance.ts';

const dir = new URL('./fixtures/golden-jpeg/', import.meta.url).pathname;
const manifest = JSON.parse(readFileSync(`${dir}manifest.json`, 'utf8')) as Array<{ name: string; sha256: string; detections: number }>;
const test = gpuSuite('JPEG golden: maskgpu vs torchvision on Pillow-decoded JPEGs');

test.test(`${manifest.length} JPEG kinds: same detections as torchvision`, async (ctx) => {
  const model = await loadMaskRCNN(ctx, goldenWeightBytes());
  try {
    let total = 0;
    for (const m of manifest) {
      const path = `${dir}${m.name}.jpg`;
      assert.is(createHash('sha256').update(readFileSync(path)).digest('hex'), m.sha256, `${m.name}.jpg is the file torchvision saw`);
      const want = JSON.parse(readFileSync(`${dir}${m.name}.json`, 'utf8')) as { detections: DetectionLike[] };
      const image = await readImageFile(path);
      const result = await model.segment(image);
      const c = compareDetections(result.detections, want.detections, jpegGoldenDetections, `${m.name}`);
      console.log(`    ${c.report}`);
      assert.ok(c.ok, c.report);
      total += want.detections.length;
    }
    assert.ok(total > 20, `the fixtures hold ${total} detections in all (a test of nothing otherwise)`);
  } finally {
    model.destroy();
  }
});

test.run();
