// What Chromium (the demo's browser) makes of tests/fixtures/jpeg/, against Pillow's decode of
// the same files (which io/image.ts reproduces byte for byte, tests/jpeg.test.ts). Each file is
// served on http://localhost, decoded in the page as the demo decodes a dropped file
// (createImageBitmap(blob, { colorSpaceConversion: 'none' }) drawn to a canvas, getImageData) and
// compared here in Node. Measured on Chromium 156 (Debian) against Pillow 9.4 / libjpeg-turbo 2.1.5:
// - every YCbCr and grayscale JPEG (baseline, progressive, 4:4:4 to 4:1:1, restart markers, junk
//   before a marker, damaged entropy data, an ICC profile ignored): identical (Chromium's decoder
//   is libjpeg-turbo too, same IDCT and "fancy" upsampling);
// - CMYK and YCCK JPEGs: up to 1 apart on about half the values. Chromium's libjpeg-turbo output
//   is the same; its CMYK->RGB is floor(c * k / 255) on the stored (Adobe-inverted) values where
//   Pillow rounds (MULDIV255). The test checks Chromium against that formula exactly;
// - EXIF orientation: Chromium always applies a JPEG's and a PNG's (imageOrientation 'none' too),
//   so it equals Pillow's exif_transpose ('apply'); it ignores a WebP's EXIF orientation, so a WebP
//   equals the stored pixels ('ignore');
// - alpha: a 2D canvas stores premultiplied colour, so colour under alpha < 255 comes back rounded
//   (and 0 under alpha 0: a transparent GIF pixel is black, where Pillow gives its palette colour);
//   opaque pixels are identical;
// - TIFF: Chromium does not decode it.
// No GPU is needed: the page only decodes images.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { PNG } from 'pngjs';
import sharp from 'sharp';
import type { Browser, Page } from 'puppeteer-core';
import { launchChromium, serve, type Served } from './browser.ts';

const DIR = new URL('./fixtures/jpeg/', import.meta.url);
interface Expected {
  file: string;
  width: number;
  height: number;
}
interface Fixture {
  file: string;
  format: 'jpeg' | 'webp' | 'gif' | 'tiff' | 'png';
  kind: string;
  jpeg?: { components: number };
  exifOrientation?: number;
  expected: Expected;
  expectedApply?: Expected;
}
const index = JSON.parse(readFileSync(new URL('index.json', DIR), 'utf8')) as { files: Fixture[] };
const CONTENT_TYPES = { jpeg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif', tiff: 'image/tiff', png: 'image/png' };

interface PageDecode {
  width: number;
  height: number;
  /** RGBA from getImageData, base64. */
  rgba: string;
}

/** In the page: the demo's decode path (demo/image.ts, README "Browser"). */
async function decodeInPage(tab: Page, files: string[], imageOrientation: 'from-image' | 'none' = 'from-image'): Promise<Record<string, PageDecode | string>> {
  return tab.evaluate(
    async (names: string[], orientation: string) => {
      const out: Record<string, { width: number; height: number; rgba: string } | string> = {};
      for (const name of names) {
        try {
          const blob = await (await fetch(`/f/${name}`)).blob();
          const bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', imageOrientation: orientation as ImageOrientation });
          const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
          const g = canvas.getContext('2d', { willReadFrequently: true })!;
          g.drawImage(bitmap, 0, 0);
          const d = g.getImageData(0, 0, bitmap.width, bitmap.height).data;
          let s = '';
          for (let i = 0; i < d.length; i++) s += String.fromCharCode(d[i]);
          out[name] = { width: bitmap.width, height: bitmap.height, rgba: btoa(s) };
        } catch (e) {
          out[name] = String(e);
        }
      }
      return out;
    },
    files,
    imageOrientation,
  );
}

function pillowRgba(e: Expected): { width: number; height: number; data: Uint8Array } {
  const png = PNG.sync.read(readFileSync(new URL(e.file, DIR)));
  return { width: png.width, height: png.height, data: new Uint8Array(png.data) };
}

interface Diff {
  max: number;
  differing: number;
  maxOpaque: number;
  transparent: number;
}
/** Colour differences (alpha ignored), overall and over opaque pixels only. */
function diff(chrome: Uint8Array, pillow: Uint8Array): Diff {
  const r: Diff = { max: 0, differing: 0, maxOpaque: 0, transparent: 0 };
  for (let p = 0; p < chrome.length / 4; p++) {
    if (chrome[p * 4 + 3] < 255) r.transparent++;
    for (let c = 0; c < 3; c++) {
      const d = Math.abs(chrome[p * 4 + c] - pillow[p * 4 + c]);
      if (d) r.differing++;
      r.max = Math.max(r.max, d);
      if (chrome[p * 4 + 3] === 255) r.maxOpaque = Math.max(r.maxOpaque, d);
    }
  }
  r.differing /= (chrome.length / 4) * 3;
  return r;
}

const test = suite('Chromium decodes the fixtures (vs Pillow)');
let server: Served;
let browser: Browser;
let decoded: Record<string, PageDecode | string>;
let tab: Page;
const summary: string[] = [];

test.before(async () => {
  const files: Record<string, [string, string | Uint8Array]> = { '/': ['text/html', '<!doctype html><meta charset="utf-8"><title>maskgpu decode test</title>'] };
  for (const f of index.files) files[`/f/${f.file}`] = [CONTENT_TYPES[f.format], new Uint8Array(readFileSync(new URL(f.file, DIR)))];
  server = await serve(files);
  browser = await launchChromium();
  tab = await browser.newPage();
  await tab.goto(server.url);
  decoded = await decodeInPage(tab, index.files.map((f) => f.file));
  summary.push(`    ${await browser.version()}`);
});

test.after(async () => {
  console.log(`\n${summary.join('\n')}`);
  await browser?.close();
  await server?.close();
});

for (const f of index.files) {
  test(`${f.file}: ${f.kind}`, async () => {
    const got = decoded[f.file];
    if (f.format === 'tiff') {
      // Chromium has no TIFF decoder; io/image.ts (libvips) reads TIFF, the demo page cannot.
      assert.type(got, 'string', `${f.file}: Chromium decoded a TIFF`);
      assert.match(got as string, /could not be decoded/);
      summary.push(`    ${f.file.padEnd(32)} not decodable in Chromium`);
      return;
    }
    assert.type(got, 'object', `${f.file}: ${got}`);
    const page = got as PageDecode;
    const chrome = new Uint8Array(Buffer.from(page.rgba, 'base64'));
    // Chromium applies a JPEG's and a PNG's EXIF orientation and ignores a WebP's (see the top).
    const applies = f.format === 'jpeg' || f.format === 'png';
    const target = applies && f.expectedApply ? f.expectedApply : f.expected;
    const pillow = pillowRgba(target);
    assert.equal([page.width, page.height], [pillow.width, pillow.height], `${f.file}: size`);
    const d = diff(chrome, pillow.data);
    const line = `${f.file.padEnd(32)} ${d.max === 0 ? 'identical' : `max ${d.max}, ${(100 * d.differing).toFixed(1)} % of values differ`}`;
    if (f.jpeg?.components === 4) {
      // Same libjpeg-turbo output; Chromium's CMYK->RGB truncates where Pillow rounds.
      const { data: cmyk } = await sharp(readFileSync(new URL(f.file, DIR)), { ignoreIcc: true }).pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer({ resolveWithObject: true });
      let worst = 0;
      for (let p = 0; p < cmyk.length / 4; p++) {
        for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(chrome[p * 4 + c] - Math.floor(((255 - cmyk[p * 4 + c]) * (255 - cmyk[p * 4 + 3])) / 255)));
      }
      assert.is(worst, 0, `${f.file}: Chromium = floor(c * k / 255) on the stored values`);
      assert.ok(d.max <= 1, `${f.file}: Chromium vs Pillow max ${d.max} (bound 1: floor vs rounded division)`);
      summary.push(`    ${line} (CMYK->RGB: floor(c*k/255) vs Pillow's rounding)`);
    } else if (d.transparent > 0) {
      // A 2D canvas keeps premultiplied colour: exact only where alpha is 255.
      assert.is(d.maxOpaque, 0, `${f.file}: opaque pixels differ by up to ${d.maxOpaque}`);
      summary.push(`    ${line} (${d.transparent} pixels with alpha < 255; opaque pixels identical)`);
    } else {
      assert.is(d.max, 0, `${f.file}: differs from Pillow by up to ${d.max} on ${(100 * d.differing).toFixed(1)} % of values`);
      summary.push(`    ${line}${f.format === 'webp' && f.exifOrientation ? " (WebP EXIF orientation not applied: equals 'ignore')" : applies && f.expectedApply ? " (EXIF orientation applied: equals 'apply')" : ''}`);
    }
  });
}

test("imageOrientation 'none' still applies a JPEG's EXIF orientation in Chromium 156", async () => {
  const none = (await decodeInPage(tab, ['exif_orientation_6.jpg'], 'none'))['exif_orientation_6.jpg'] as PageDecode;
  const dflt = decoded['exif_orientation_6.jpg'] as PageDecode;
  assert.equal([none.width, none.height, none.rgba], [dflt.width, dflt.height, dflt.rgba]);
  assert.equal([none.width, none.height], [21, 33], 'rotated: the stored image is 33x21');
});

test.run();
