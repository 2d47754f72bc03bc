// Image decoding (io/image.ts: PNG decoded in-house, JPEG and the rest by sharp), COCO RLE
// (engine/rle.ts, checked against hand-computed pycocotools counts), the palette, the bitmap font
// and the overlay. No GPU. Test images are built here: PNGs chunk by chunk (so every colour type
// and bit depth, palette and tRNS can be written with known pixel values) and JPEGs with a tiny
// DC-only baseline encoder (flat 8x8 blocks decode exactly; 1- and 4-component files too).
// tests/jpeg.test.ts checks decodes against Pillow's on real encoder output.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import sharp from 'sharp';
import { decodeImage, decodePng, encodePng, ImageDecodeError, readImageFile, type RgbImage } from '../io/image.ts';
import { drawText, textSize } from '../io/font.ts';
import { renderOverlay, type OverlayDetection } from '../io/overlay.ts';
import { instanceColor, textColorOn } from '../engine/palette.ts';
import { decodeRle, encodeRle, encodeRleFromBits, rleArea, rleIou, type RleMask } from '../engine/rle.ts';
import { rng } from './random.ts';

// ---------- PNG writer: signature + chunks, filter 0 on every row ----------
function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(Buffer.from(type, 'latin1'), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

interface PngSpec {
  width: number;
  height: number;
  colorType: 0 | 2 | 3 | 4 | 6;
  depth: 1 | 2 | 4 | 8 | 16;
  samples: number[];
  plte?: number[];
  trns?: number[];
  /** Row filter types (0 none, 1 sub, 2 up, 3 average, 4 paeth), cycled over the rows; default all 0. */
  filters?: number[];
}

/** PNG's row filters (spec section 9) on 8-bit rows, encoding side: each byte minus its predictor. */
function filterRows(raw: Uint8Array, rowBytes: number, height: number, bpp: number, filters: number[]): void {
  const unfiltered = raw.slice();
  for (let y = 0; y < height; y++) {
    const at = y * (rowBytes + 1);
    const f = filters[y % filters.length];
    raw[at] = f;
    for (let i = 0; i < rowBytes; i++) {
      const a = i >= bpp ? unfiltered[at + 1 + i - bpp] : 0;
      const b = y > 0 ? unfiltered[at - rowBytes + i] : 0;
      const c = i >= bpp && y > 0 ? unfiltered[at - rowBytes + i - bpp] : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const predictor = [0, a, b, (a + b) >> 1, paeth][f];
      raw[at + 1 + i] = (unfiltered[at + 1 + i] - predictor) & 255;
    }
  }
}

/** samples: row-major, channels interleaved, at the PNG's bit depth (packed MSB first below 8). */
function makePng(s: PngSpec): Uint8Array {
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[s.colorType];
  const rowBytes = Math.ceil((s.width * channels * s.depth) / 8);
  const raw = new Uint8Array((rowBytes + 1) * s.height);
  for (let y = 0; y < s.height; y++) {
    for (let k = 0; k < s.width * channels; k++) {
      const v = s.samples[y * s.width * channels + k];
      const at = y * (rowBytes + 1) + 1;
      if (s.depth === 16) { raw[at + 2 * k] = v >> 8; raw[at + 2 * k + 1] = v & 255; }
      else if (s.depth === 8) raw[at + k] = v;
      else raw[at + ((k * s.depth) >> 3)] |= v << (8 - s.depth - ((k * s.depth) & 7));
    }
  }
  if (s.filters) {
    if (s.depth !== 8) throw new Error('makePng: filters are written for 8-bit samples only');
    filterRows(raw, rowBytes, s.height, channels, s.filters);
  }
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, s.width);
  new DataView(ihdr.buffer).setUint32(4, s.height);
  ihdr.set([s.depth, s.colorType, 0, 0, 0], 8);
  const parts = [Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr)];
  if (s.plte) parts.push(chunk('PLTE', Uint8Array.from(s.plte)));
  if (s.trns) parts.push(chunk('tRNS', Uint8Array.from(s.trns)));
  parts.push(chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0)));
  return new Uint8Array(Buffer.concat(parts)); // a copy: Buffer.slice would share memory
}

function randomBytes(seed: number, n: number, max = 256): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * max));
}

function checkDecodeError(e: unknown, pattern: RegExp, what: string): ImageDecodeError {
  assert.instance(e, ImageDecodeError, `${what}: wrong error type: ${e}`);
  const message = (e as Error).message;
  assert.ok(message.startsWith('test.img: '), `${what}: message does not name the file: ${message}`);
  assert.match(message, pattern, `${what}: ${message}`);
  return e as ImageDecodeError;
}

/** The error the synchronous PNG decoder raises. */
function expectDecodeError(bytes: Uint8Array, pattern: RegExp, what: string): ImageDecodeError {
  try {
    decodePng(bytes, 'test.img');
  } catch (e) {
    return checkDecodeError(e, pattern, what);
  }
  assert.unreachable(`${what}: decoded without an error`);
  throw new Error('unreachable');
}

/** The error decodeImage (every format) rejects with. */
async function expectImageError(bytes: Uint8Array, pattern: RegExp, what: string): Promise<ImageDecodeError> {
  const e = await decodeImage(bytes, 'test.img').then(() => assert.unreachable(`${what}: decoded without an error`), (err: unknown) => err);
  return checkDecodeError(e, pattern, what);
}

const png = suite('PNG decoding');
png('8-bit RGB and RGBA (alpha dropped, even where 0) decode exactly', () => {
  const rgb = randomBytes(1, 7 * 5 * 3);
  assert.equal(Array.from(decodePng(makePng({ width: 7, height: 5, colorType: 2, depth: 8, samples: rgb })).data), rgb);
  const rgba = randomBytes(2, 6 * 3 * 4);
  for (let i = 3; i < rgba.length; i += 8) rgba[i] = 0; // every other pixel fully transparent
  const img = decodePng(makePng({ width: 6, height: 3, colorType: 6, depth: 8, samples: rgba }));
  assert.equal([img.width, img.height], [6, 3]);
  assert.equal(Array.from(img.data), rgba.filter((_, i) => i % 4 !== 3));
});
png('grayscale and grayscale+alpha are replicated into R, G, B', () => {
  const gray = randomBytes(3, 5 * 4);
  assert.equal(Array.from(decodePng(makePng({ width: 5, height: 4, colorType: 0, depth: 8, samples: gray })).data), gray.flatMap((g) => [g, g, g]));
  const ga = randomBytes(4, 3 * 3 * 2);
  const want = ga.filter((_, i) => i % 2 === 0).flatMap((g) => [g, g, g]);
  assert.equal(Array.from(decodePng(makePng({ width: 3, height: 3, colorType: 4, depth: 8, samples: ga })).data), want);
});
png('every row filter (none, sub, up, average, paeth) on 8-bit gray, gray+alpha, RGB and RGBA decodes exactly, as pngjs does', () => {
  for (const [colorType, channels] of [[0, 1], [4, 2], [2, 3], [6, 4]] as const) {
    const [w, h] = [13, 11];
    const samples = randomBytes(30 + colorType, w * h * channels);
    const bytes = makePng({ width: w, height: h, colorType, depth: 8, samples, filters: [0, 1, 2, 3, 4, 4, 3, 2, 1] });
    const want = Array.from({ length: w * h }, (_, p) => (channels >= 3 ? [0, 1, 2] : [0, 0, 0]).map((c) => samples[p * channels + c])).flat();
    assert.equal(Array.from(decodePng(bytes).data), want, `colour type ${colorType}`);
    const viaPngjs = PNG.sync.read(Buffer.from(bytes));
    assert.equal(Array.from(viaPngjs.data).filter((_, i) => i % 4 !== 3), want, `pngjs agrees on colour type ${colorType}`);
  }
  expectDecodeError(
    makePng({ width: 4, height: 2, colorType: 2, depth: 8, samples: randomBytes(31, 24), filters: [0, 5] }),
    /corrupt PNG \(row 1 has filter type 5; PNG has 0 to 4\)/,
    'filter type 5',
  );
});
png('1/2/4-bit grayscale is scaled to 0..255 like PIL (v * 255 / (2^d - 1))', () => {
  for (const depth of [1, 2, 4] as const) {
    const max = (1 << depth) - 1;
    const g = randomBytes(10 + depth, 9 * 2, max + 1);
    const img = decodePng(makePng({ width: 9, height: 2, colorType: 0, depth, samples: g }));
    assert.equal(Array.from(img.data), g.flatMap((v) => Array(3).fill((v * 255) / max)), `depth ${depth}`);
  }
});
png('palette PNGs (8-bit, and 4-bit on an odd width) expand; palette tRNS is ignored', () => {
  const plte = randomBytes(5, 16 * 3);
  for (const depth of [8, 4] as const) {
    const idx = randomBytes(6 + depth, 5 * 3, 16);
    const img = decodePng(makePng({ width: 5, height: 3, colorType: 3, depth, samples: idx, plte, trns: [0, 128, 255] }));
    assert.equal(Array.from(img.data), idx.flatMap((i) => plte.slice(3 * i, 3 * i + 3)), `depth ${depth}`);
  }
});
png('a tRNS colour key does not black out the keyed pixels', () => {
  const rgb = [10, 20, 30, 200, 100, 50, 10, 20, 30, 0, 0, 0];
  const img = decodePng(makePng({ width: 2, height: 2, colorType: 2, depth: 8, samples: rgb, trns: [0, 10, 0, 20, 0, 30] }));
  assert.equal(Array.from(img.data), rgb);
});
png('16-bit RGB and gray are scaled to 8 bit as round(v * 255 / 65535)', () => {
  const rgb16 = [0, 65535, 257 * 77, 128, 32767, 32768, ...randomBytes(7, 4 * 3, 65536)];
  const img = decodePng(makePng({ width: 3, height: 2, colorType: 2, depth: 16, samples: rgb16 }));
  assert.equal(Array.from(img.data), rgb16.map((v) => Math.round((v * 255) / 65535)));
  assert.equal(Array.from(img.data.subarray(0, 3)), [0, 255, 77]);
  const g16 = randomBytes(8, 4, 65536);
  const gi = decodePng(makePng({ width: 2, height: 2, colorType: 0, depth: 16, samples: g16 }));
  assert.equal(Array.from(gi.data), g16.flatMap((v) => Array(3).fill(Math.round((v * 255) / 65535))));
});
png('encodePng round-trips through decodePng', () => {
  const img: RgbImage = { width: 11, height: 7, data: Uint8Array.from(randomBytes(9, 11 * 7 * 3)) };
  const back = decodePng(encodePng(img));
  assert.equal([back.width, back.height], [11, 7]);
  assert.equal(Array.from(back.data), Array.from(img.data));
  assert.throws(() => encodePng({ width: 2, height: 2, data: new Uint8Array(5) }), /5 bytes of data for a 2x2 RGB image/);
});
png('corrupt, truncated, empty, zero-size and oversized PNGs are clear ImageDecodeErrors', () => {
  // A copy with its own ArrayBuffer: a pooled Node Buffer would share memory across slice() and
  // put DataView offsets in the wrong place (this test was flaky that way).
  const good = new Uint8Array(makePng({ width: 16, height: 16, colorType: 2, depth: 8, samples: randomBytes(11, 16 * 16 * 3) }));
  const idat = Buffer.from(good).indexOf('IDAT');
  const flipped = good.slice();
  flipped[idat + 10] ^= 0xff;
  expectDecodeError(flipped, new RegExp(`corrupt PNG \\(chunk "IDAT" at byte ${idat - 4} fails its CRC check`), 'flipped IDAT byte');
  // Same corruption with a recomputed CRC, so zlib itself meets the damage.
  const len = new DataView(good.buffer, good.byteOffset).getUint32(idat - 4);
  const badZlib = good.slice();
  badZlib.fill(0xff, idat + 6, idat + 12);
  new DataView(badZlib.buffer).setUint32(idat + 4 + len, crc32(badZlib.subarray(idat, idat + 4 + len)));
  expectDecodeError(badZlib, /corrupt or truncated PNG/, 'damaged zlib stream');
  for (const cut of [8, 20, 40, idat + 20, good.length - 13, good.length - 1]) {
    expectDecodeError(good.subarray(0, cut), /truncated PNG/, `truncated at ${cut} of ${good.length}`);
  }
  const trailing = Buffer.concat([good, Uint8Array.from(randomBytes(13, 50))]);
  assert.is(decodePng(trailing).width, 16, 'bytes after IEND are ignored, as PIL does');
  expectDecodeError(new Uint8Array(0), /the file is empty \(0 bytes\)/, 'empty');
  expectDecodeError(makePng({ width: 0, height: 0, colorType: 2, depth: 8, samples: [] }), /0x0 pixels; an image needs at least one pixel/, '0x0');
  const huge = good.slice();
  new DataView(huge.buffer).setUint32(16, 100000);
  new DataView(huge.buffer).setUint32(20, 50000);
  expectDecodeError(huge, /100000x50000 pixels \(5000\.0 MP\), over maskgpu's limit of 100 MP/, 'huge IHDR');
});
png('a decompression bomb (16x16 declared, 5 MB of zeros inflated) is refused before pngjs sees it', () => {
  const good = makePng({ width: 16, height: 16, colorType: 2, depth: 8, samples: randomBytes(14, 16 * 16 * 3) });
  const ihdr = good.subarray(8, 8 + 25);
  const bomb = new Uint8Array(Buffer.concat([good.subarray(0, 8), ihdr, chunk('IDAT', deflateSync(Buffer.alloc(5_000_000))), chunk('IEND', new Uint8Array(0))]));
  assert.ok(bomb.length < 10_000, `${bomb.length}-byte file`);
  const before = process.memoryUsage().arrayBuffers;
  expectDecodeError(bomb, /image data inflates past the \d+ bytes its size allows \(a decompression bomb or a corrupt file\)/, 'bomb');
  assert.ok(process.memoryUsage().arrayBuffers - before < 4_000_000, 'the 5 MB were never inflated');
});
png('the pixel limit is an option: over it PNG and JPEG are refused naming the limit and the flag', async () => {
  const png = makePng({ width: 2000, height: 600, colorType: 0, depth: 8, samples: new Array(2000 * 600).fill(9) });
  assert.equal([decodePng(png).width, decodePng(png, 'x', { maxMegapixels: 1.2 }).height], [2000, 600]);
  assert.throws(
    () => decodePng(png, 'big.png', { maxMegapixels: 1 }),
    (e: Error) => e instanceof ImageDecodeError && /big\.png: the PNG declares 2000x600 pixels \(1\.2 MP\), over maskgpu's limit of 1 MP .*--max-megapixels/.test(e.message),
  );
  const viaDecodeImage = await decodeImage(png, 'big.png', { maxMegapixels: 1 }).then(() => undefined, (e: Error) => e);
  assert.match(String(viaDecodeImage), /big\.png: the PNG declares 2000x600 pixels/);
  const jpg = blockJpeg(1600, 800, [new Array(200 * 100).fill(100)]);
  assert.is((await decodeImage(jpg)).width, 1600);
  const tooBig = await decodeImage(jpg, 'big.jpg', { maxMegapixels: 0.5 }).then(() => undefined, (e: Error) => e);
  assert.match(String(tooBig), /big\.jpg: the JPEG declares 1600x800 pixels \(1\.3 MP\), over maskgpu's limit of 0\.5 MP/);
  assert.throws(() => decodePng(png, 'x', { maxMegapixels: 0 }), /maxMegapixels must be a positive number/);
  const zero = await decodeImage(jpg, 'x', { maxMegapixels: 0 }).then(() => undefined, (e: Error) => e);
  assert.match(String(zero), /maxMegapixels must be a positive number/);
});
png('decodeImage decodes PNGs exactly as decodePng', async () => {
  for (const [colorType, channels, depth] of [[2, 3, 8], [6, 4, 8], [0, 1, 16], [3, 1, 4]] as const) {
    const samples = randomBytes(40 + colorType, 5 * 3 * channels, colorType === 3 ? 16 : 2 ** depth);
    const bytes = makePng({ width: 5, height: 3, colorType, depth, samples, plte: colorType === 3 ? randomBytes(41, 48) : undefined });
    assert.equal(Array.from((await decodeImage(bytes)).data), Array.from(decodePng(bytes).data), `colour type ${colorType}, depth ${depth}`);
  }
});
png('random bytes and other formats are named as such', async () => {
  const e = await expectImageError(
    Uint8Array.from(randomBytes(12, 64)),
    /not a PNG or JPEG file, nor WebP, AVIF, TIFF or GIF \(starts with [0-9a-f]{2}( [0-9a-f]{2}){7}\); maskgpu reads PNG, JPEG, WebP, AVIF, TIFF and GIF: convert it to PNG or JPEG/,
    'random',
  );
  assert.is(e.name, 'ImageDecodeError');
  await expectImageError(Buffer.from('GIF89a\x01\x00\x01\x00', 'latin1'), /(truncated|corrupt or truncated) GIF/, 'a cut-off GIF');
  await expectImageError(Buffer.from('BM\x01\x00\x01\x00\x00\x00', 'latin1'), /looks like a BMP/, 'bmp');
  await expectImageError(new Uint8Array(0), /the file is empty \(0 bytes\)/, 'empty');
  expectDecodeError(blockJpeg(8, 8, [[1]]), /not a PNG file \(no PNG signature\); decodeImage reads PNG, JPEG, WebP, AVIF, TIFF and GIF/, 'a JPEG handed to decodePng');
});
png('readImageFile decodes a file and names a missing path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'maskgpu-image-'));
  try {
    const path = join(dir, 'a.png');
    writeFileSync(path, makePng({ width: 2, height: 1, colorType: 2, depth: 8, samples: [1, 2, 3, 4, 5, 6] }));
    assert.equal(Array.from((await readImageFile(path)).data), [1, 2, 3, 4, 5, 6]);
    const missing = join(dir, 'missing.jpg');
    const err = await readImageFile(missing).then(() => undefined, (e: Error) => e);
    assert.instance(err, ImageDecodeError);
    assert.is(err!.message, `${missing}: cannot read the image: no such file`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
png.run();

// ---------- JPEG: a DC-only baseline encoder (quant table of 1s, custom Huffman tables) ----------
/** blocks[c][by * bw + bx] = the flat value of component c's 8x8 block; width/height multiples of 8. */
function blockJpeg(width: number, height: number, blocks: number[][], adobeTransform?: number): Uint8Array {
  const n = blocks.length;
  const out: number[] = [0xff, 0xd8];
  const segment = (marker: number, body: number[]) => out.push(0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 255, ...body);
  if (adobeTransform !== undefined) segment(0xee, [...Buffer.from('Adobe'), 0, 100, 0, 0, 0, 0, adobeTransform]);
  segment(0xdb, [0, ...Array(64).fill(1)]);
  segment(0xc0, [8, height >> 8, height & 255, width >> 8, width & 255, n, ...blocks.flatMap((_, c) => [c + 1, 0x11, 0])]);
  segment(0xc4, [0x00, 0, 0, 0, 12, ...Array(12).fill(0), ...Array.from({ length: 12 }, (_, i) => i)]); // DC: categories 0..11, 4-bit codes
  segment(0xc4, [0x10, 1, ...Array(15).fill(0), 0x00]); // AC: only EOB, code '0'
  segment(0xda, [n, ...blocks.flatMap((_, c) => [c + 1, 0x00]), 0, 63, 0]);
  let acc = 0;
  let bits = 0;
  const put = (value: number, count: number) => {
    for (let b = count - 1; b >= 0; b--) {
      acc = (acc << 1) | ((value >> b) & 1);
      if (++bits === 8) {
        out.push(acc);
        if (acc === 0xff) out.push(0);
        acc = bits = 0;
      }
    }
  };
  const pred = Array(n).fill(0);
  for (let blk = 0; blk < (width / 8) * (height / 8); blk++) {
    for (let c = 0; c < n; c++) {
      const dc = 8 * (blocks[c][blk] - 128);
      const diff = dc - pred[c];
      pred[c] = dc;
      const cat = diff === 0 ? 0 : Math.floor(Math.log2(Math.abs(diff))) + 1;
      put(cat, 4);
      if (cat > 0) put(diff >= 0 ? diff : diff + (1 << cat) - 1, cat);
      put(0, 1); // EOB
    }
  }
  if (bits > 0) put(0x7f, 8 - bits); // pad with 1s
  out.push(0xff, 0xd9);
  return Uint8Array.from(out);
}

function smoothRgba(w: number, h: number): Uint8Array {
  const d = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    d.set([Math.round((255 * x) / (w - 1)), Math.round((255 * y) / (h - 1)), Math.round(128 + 100 * Math.sin((x + y) / 6)), 255], (y * w + x) * 4);
  }
  return d;
}

const jpg = suite('JPEG decoding');
/** A libjpeg-family (sharp/mozjpeg) encode of RGBA's colour channels. */
async function encodeJpeg(w: number, h: number, rgba: Uint8Array, quality: number): Promise<Uint8Array> {
  const rgb = Buffer.from(rgba.filter((_, i) => i % 4 !== 3));
  return new Uint8Array(await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality }).toBuffer());
}
jpg('an RGB JPEG decodes within JPEG tolerance', async () => {
  const [w, h] = [33, 21];
  const src = smoothRgba(w, h);
  const img = await decodeImage(await encodeJpeg(w, h, src, 95));
  assert.equal([img.width, img.height], [w, h]);
  let worst = 0;
  let sum = 0;
  for (let p = 0; p < w * h; p++) for (let c = 0; c < 3; c++) {
    const err = Math.abs(img.data[p * 3 + c] - src[p * 4 + c]);
    worst = Math.max(worst, err);
    sum += err;
  }
  assert.ok(worst <= 16 && sum / (w * h * 3) <= 2.5, `JPEG error: max ${worst}, mean ${(sum / (w * h * 3)).toFixed(2)}`);
});
jpg('grayscale (1-component) JPEG: flat blocks decode to their value in R, G and B', async () => {
  const values = [0, 255, 128, 17, 200, 90];
  const img = await decodeImage(blockJpeg(24, 16, [values]));
  assert.equal([img.width, img.height], [24, 16]);
  for (let y = 0; y < 16; y++) for (let x = 0; x < 24; x++) {
    const want = values[(y >> 3) * 3 + (x >> 3)];
    const i = (y * 24 + x) * 3;
    assert.ok(img.data[i] === want && img.data[i] === img.data[i + 1] && img.data[i] === img.data[i + 2], `(${x},${y}): ${img.data.subarray(i, i + 3)} vs ${want}`);
  }
});
jpg('CMYK JPEG (inverted, as Photoshop writes it) converts to RGB as Pillow does, Adobe marker or not', async () => {
  // stored C, M, Y, K per block (255 = no ink): no ink, full cyan, full magenta, full black, and
  // stored 127 = ink 128 of cyan and of black: R = (255 - 128) - MULDIV255(128, 127) = 127 - 64,
  // G = B = 127, as Pillow's cmyk2rgb
  const cmyk = [[255, 0, 255, 255, 127], [255, 255, 0, 255, 255], [255, 255, 255, 255, 255], [255, 255, 255, 0, 127]];
  const img = await decodeImage(blockJpeg(40, 8, cmyk, 0));
  const at = (bx: number) => Array.from(img.data.subarray((4 + bx * 8) * 3, (4 + bx * 8) * 3 + 3));
  assert.equal([at(0), at(1), at(2), at(3), at(4)], [[255, 255, 255], [0, 255, 255], [255, 0, 255], [0, 0, 0], [63, 127, 127]]);
  // Pillow reads every 4-component JPEG as Adobe-inverted CMYK, and so does libvips.
  assert.equal(Array.from((await decodeImage(blockJpeg(40, 8, cmyk))).data), Array.from(img.data), 'no Adobe marker: the same pixels');
});
jpg('truncated, corrupt, zero-size and huge-header JPEGs are clear ImageDecodeErrors', async () => {
  const good = await encodeJpeg(40, 30, smoothRgba(40, 30), 90);
  const sos = Buffer.from(good).indexOf(Buffer.from([0xff, 0xda]));
  for (const cut of [3, 20, 100, sos - 10, sos + 30, Math.floor((sos + good.length) / 2), good.length - 2]) {
    const want = cut > sos ? /truncated JPEG \(the file ends before its end-of-image marker\); copy or download it again/ : /truncated JPEG \(|corrupt or truncated JPEG \(/;
    await expectImageError(good.subarray(0, cut), want, `truncated at ${cut} of ${good.length}`);
  }
  const sof = Buffer.from(good).indexOf(Buffer.from([0xff, 0xc0]));
  const huge = Uint8Array.from(good);
  huge.set([0xfd, 0xe8, 0xfd, 0xe8], sof + 5); // 65000 x 65000
  await expectImageError(huge, /65000x65000 pixels \(4225\.0 MP\), over maskgpu's limit of 100 MP/, 'huge SOF');
  const empty = Uint8Array.from(good);
  empty.set([0, 0], sof + 5);
  await expectImageError(empty, /JPEG is 40x0 pixels/, 'zero height');
});
jpg.run();

// ---------- COCO RLE ----------
function randomMask(seed: number, h: number, w: number, density: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: h * w }, () => (r() < density ? 1 : 0));
}

function packBits(mask: Uint8Array, h: number, w: number, rowWords: number, junkSeed: number): Uint32Array {
  const r = rng(junkSeed);
  const bits = new Uint32Array(h * rowWords);
  for (let i = 0; i < bits.length; i++) bits[i] = (r() * 2 ** 32) >>> 0; // junk past column w must be ignored
  for (let y = 0; y < h; y++) for (let x = 0; x < rowWords * 32; x++) {
    const word = y * rowWords + (x >> 5);
    if (x < w) bits[word] = mask[y * w + x] ? bits[word] | (1 << (x & 31)) : bits[word] & ~(1 << (x & 31));
  }
  return bits;
}

const rle = suite('COCO RLE');
rle('hand-computed counts (column-major, zero run first)', () => {
  assert.equal(encodeRle(new Uint8Array(12), 3, 4), { size: [3, 4], counts: [12] });
  assert.equal(encodeRle(new Uint8Array(12).fill(7), 3, 4).counts, [0, 12]);
  const first = new Uint8Array(12);
  first[0] = 1;
  assert.equal(encodeRle(first, 3, 4).counts, [0, 1, 11]);
  // rows: 0110 / 1100 / 0101; columns top to bottom: 010 111 100 001
  const m = Uint8Array.from([0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 1]);
  assert.equal(encodeRle(m, 3, 4), { size: [3, 4], counts: [1, 1, 1, 4, 4, 1] });
  assert.equal(Array.from(decodeRle({ size: [3, 4], counts: [1, 1, 1, 4, 4, 1] })), Array.from(m));
  assert.is(rleArea({ size: [3, 4], counts: [1, 1, 1, 4, 4, 1] }), 6);
  assert.equal(encodeRle(new Uint8Array(0), 0, 5).counts, [0]); // pycocotools' empty mask
  assert.equal(Array.from(decodeRle({ size: [0, 5], counts: [0] })), []);
});
rle('encode/decode round-trip on random masks of odd sizes', () => {
  const shapes = [[1, 1], [1, 7], [7, 1], [13, 9], [31, 33], [5, 70]];
  shapes.forEach(([h, w], k) => {
    for (const density of [0, 0.1, 0.5, 0.95, 1]) {
      const m = randomMask(100 + k, h, w, density);
      const enc = encodeRle(m, h, w);
      assert.is(enc.counts.reduce((a, b) => a + b, 0), h * w);
      assert.ok(enc.counts.slice(1).every((c) => c > 0), 'only the first run may be empty');
      assert.equal(Array.from(decodeRle(enc)), Array.from(m), `${h}x${w} density ${density}`);
      assert.is(rleArea(enc), m.reduce((a, b) => a + b, 0));
    }
  });
  assert.throws(() => decodeRle({ size: [3, 4], counts: [1, 2] }), /counts sum to 3, but size 3x4 has 12 pixels/);
  assert.throws(() => encodeRle(new Uint8Array(5), 2, 3), /5 values, expected 2x3 = 6/);
});
rle('encodeRleFromBits equals encodeRle (widths 1, 31, 32, 33, 70; padded rows; sparse masks)', () => {
  let seed = 300;
  for (const w of [1, 31, 32, 33, 70]) {
    for (const h of [1, 6, 17]) {
      const words = Math.ceil(w / 32);
      for (const rowWords of [words, words + 1]) {
        const masks = [randomMask(seed++, h, w, 0.5), randomMask(seed++, h, w, 0.03), new Uint8Array(h * w), new Uint8Array(h * w).fill(1)];
        for (const m of masks) {
          const got = encodeRleFromBits(packBits(m, h, w, rowWords, seed++), h, w, rowWords);
          assert.equal(got, encodeRle(m, h, w), `h ${h} w ${w} rowWords ${rowWords}`);
        }
      }
    }
  }
  // A blob in a wide image exercises the all-zero 32-column stripes.
  const [h, w] = [9, 130];
  const blob = new Uint8Array(h * w);
  for (let y = 2; y < 7; y++) for (let x = 60; x < 75; x++) blob[y * w + x] = 1;
  assert.equal(encodeRleFromBits(packBits(blob, h, w, 5, 1), h, w, 5), encodeRle(blob, h, w));
  assert.throws(() => encodeRleFromBits(new Uint32Array(4), 2, 70, 2), /rowWords 2 cannot hold 70 columns \(needs 3\)/);
});
rle('rleIou on known cases and against decoded masks', () => {
  const [h, w] = [4, 4];
  const left = new Uint8Array(16);
  const top = new Uint8Array(16);
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) {
    left[y * 4 + x] = x < 2 ? 1 : 0;
    top[y * 4 + x] = y < 2 ? 1 : 0;
  }
  const L = encodeRle(left, h, w);
  const T = encodeRle(top, h, w);
  const empty = encodeRle(new Uint8Array(16), h, w);
  assert.is(rleIou(L, T), 4 / 12);
  assert.is(rleIou(L, L), 1);
  assert.is(rleIou(L, encodeRle(left.map((v) => 1 - v), h, w)), 0);
  assert.is(rleIou(empty, empty), 0); // pycocotools: empty intersection gives 0
  assert.is(rleIou(L, empty), 0);
  for (let k = 0; k < 20; k++) {
    const a = randomMask(500 + k, 11, 13, 0.1 + k * 0.04);
    const b = randomMask(600 + k, 11, 13, 0.5);
    let inter = 0;
    let union = 0;
    for (let i = 0; i < a.length; i++) { inter += a[i] & b[i]; union += a[i] | b[i]; }
    assert.ok(Math.abs(rleIou(encodeRle(a, 11, 13), encodeRle(b, 11, 13)) - inter / union) < 1e-12, `case ${k}`);
  }
  assert.throws(() => rleIou(L, encodeRle(new Uint8Array(15), 3, 5)), /masks differ in size, 4x4 vs 3x5/);
});
rle.run();

// ---------- palette, font, overlay ----------
const draw = suite('palette, font and overlay');
draw('instanceColor is deterministic and the first 20 colours are distinct', () => {
  const colors = Array.from({ length: 20 }, (_, i) => instanceColor(i));
  assert.equal(instanceColor(3), colors[3]);
  for (const c of colors) assert.ok(c.every((v) => Number.isInteger(v) && v >= 0 && v <= 255), `${c}`);
  let closest = Infinity;
  for (let i = 0; i < 20; i++) for (let j = 0; j < i; j++) closest = Math.min(closest, Math.hypot(...colors[i].map((v, k) => v - colors[j][k])));
  assert.ok(closest > 25, `two of the first 20 colours are only ${closest.toFixed(1)} apart`);
  assert.equal(textColorOn([255, 255, 0]), [0, 0, 0]);
  assert.equal(textColorOn([0, 0, 160]), [255, 255, 255]);
});
draw('drawText draws glyph pixels, clips, and survives any character', () => {
  const blank = (): RgbImage => ({ width: 20, height: 10, data: new Uint8Array(600) });
  const img = blank();
  drawText(img, 1, 1, 'I', [255, 0, 0]);
  const lit: string[] = [];
  for (let y = 0; y < 10; y++) for (let x = 0; x < 20; x++) if (img.data[(y * 20 + x) * 3] === 255) lit.push(`${x},${y}`);
  // 'I' = columns 0x00 0x41 0x7f 0x41 0x00: serifs at rows 0 and 6, the stem in column 2
  assert.equal(lit.sort(), ['2,1', '2,7', '3,1', '3,2', '3,3', '3,4', '3,5', '3,6', '3,7', '4,1', '4,7'].sort());
  const odd = blank();
  drawText(odd, -3, -2, 'é\n\u0001😀~', [9, 9, 9], 2, [1, 2, 3]);
  drawText(odd, 100, 100, 'far away', [9, 9, 9]);
  const q = blank();
  drawText(q, -3, -2, '????~', [9, 9, 9], 2, [1, 2, 3]);
  assert.equal(Array.from(odd.data), Array.from(q.data), 'unknown characters draw as ?');
  assert.ok(odd.data.includes(9) && odd.data.includes(1));
  assert.equal(textSize('ab', 2), { width: 22, height: 16 });
});

function rectMask(h: number, w: number, x0: number, y0: number, x1: number, y1: number): RleMask {
  const m = new Uint8Array(h * w);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * w + x] = 1;
  return encodeRle(m, h, w);
}

draw('renderOverlay: tinted masks, box outlines, labels, untouched background', () => {
  const [W, H] = [64, 48];
  const data = new Uint8Array(W * H * 3);
  for (let i = 0; i < data.length; i++) data[i] = 60 + ((i * 7) % 50);
  const img: RgbImage = { width: W, height: H, data };
  const before = data.slice();
  const dets: OverlayDetection[] = [
    { box: [20, 26, 40, 46], label: 18, labelName: 'dog', score: 0.97, mask: rectMask(H, W, 24, 28, 36, 44) },
    { box: [0, 0, 18.5, 30.2], label: 3, labelName: 'car', score: 0.51, mask: rectMask(H, W, 2, 14, 10, 28) },
  ];
  const out = renderOverlay(img, dets);
  assert.equal([out.width, out.height, out.data.length], [W, H, W * H * 3]);
  assert.equal(Array.from(img.data), Array.from(before), 'input image modified');
  const px = (x: number, y: number) => Array.from(out.data.subarray((y * W + x) * 3, (y * W + x) * 3 + 3));
  const src = (x: number, y: number) => Array.from(before.subarray((y * W + x) * 3, (y * W + x) * 3 + 3));
  const c0 = instanceColor(0);
  const c1 = instanceColor(1);
  for (const [x, y, c] of [[30, 36, c0], [5, 20, c1]] as const) {
    assert.equal(px(x, y), src(x, y).map((v, k) => Math.round(v * 0.55 + c[k] * 0.45)), `mask pixel ${x},${y}`);
  }
  for (const [x, y] of [[60, 5], [50, 47], [45, 35], [5, 40]]) assert.equal(px(x, y), src(x, y), `background ${x},${y}`);
  // Outline of box 0: pixels x 20..39, y 26..45, 2 px thick; its tag sits above it (rows 14..25),
  // moved left to x 13 so that all 51 px of it fit in the image.
  for (const [x, y] of [[20, 35], [21, 35], [39, 30], [38, 30], [30, 45], [30, 44], [39, 45], [25, 26], [25, 27]]) assert.equal(px(x, y), c0, `box 0 edge ${x},${y}`);
  assert.equal(px(22, 35), src(22, 35), 'inside the outline, outside the mask');
  // Box 1 touches the top, so its tag is drawn inside the box from row 0.
  const tagPixels = (x0: number, y0: number, x1: number, y1: number, c: number[]) => {
    let n = 0;
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (px(x, y).every((v, k) => v === c[k])) n++;
    return n;
  };
  const ink0 = textColorOn(c0);
  const ink1 = textColorOn(c1);
  const tag0w = textSize('dog 0.97').width + 4;
  assert.is(tag0w, 51);
  assert.ok(tagPixels(13, 14, 64, 26, ink0) > 20, 'label 0 text drawn');
  assert.ok(tagPixels(13, 14, 64, 26, c0) > 200, 'label 0 tag filled');
  assert.equal(px(12, 20), src(12, 20), 'left of tag 0');
  assert.ok(tagPixels(0, 0, 51, 12, ink1) > 20, 'label 1 text drawn inside the box');
});
draw('renderOverlay: higher scores on top, clipping, and size checks', () => {
  const [W, H] = [64, 48];
  const img: RgbImage = { width: W, height: H, data: new Uint8Array(W * H * 3).fill(100) };
  const overlap = rectMask(H, W, 4, 20, 30, 40);
  const low: OverlayDetection = { box: [-50, -50, 500, 500], label: 2, labelName: '', score: 0.3, mask: overlap };
  const high: OverlayDetection = { box: [3, 18, 31, 41], label: 1, labelName: 'a', score: 0.9, mask: overlap };
  const out = renderOverlay(img, [low, high], { alpha: 0.5 });
  const [c0, c1] = [instanceColor(0), instanceColor(1)];
  const once = c0.map((c) => Math.round(100 * 0.5 + c * 0.5));
  const twice = once.map((v, k) => Math.round(v * 0.5 + c1[k] * 0.5));
  assert.equal(Array.from(out.data.subarray((30 * W + 20) * 3, (30 * W + 20) * 3 + 3)), twice, 'the 0.9 detection is blended last');
  assert.equal(Array.from(out.data.subarray(((H - 1) * W + 40) * 3, ((H - 1) * W + 40) * 3 + 3)), c0, 'a box past the image is clipped to its border');
  assert.throws(() => renderOverlay(img, [{ ...high, mask: rectMask(W, H, 0, 0, 1, 1) }]), /64x48 mask \(size is \[height, width\]\) but the image is 48x64/);
});
draw.run();
