// io/image.ts decodes JPEG (and WebP, GIF, TIFF, a PNG with EXIF) exactly as Pillow does:
// every file in tests/fixtures/jpeg/ (tools/make_jpeg_fixtures.py, with Pillow 9.4 /
// libjpeg-turbo 2.1.5's `Image.open(f).convert('RGB')` of each) must decode to the same bytes,
// with EXIF orientation ignored (the default) and applied (ImageOps.exif_transpose). No GPU.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PNG } from 'pngjs';
import sharp, { type Sharp } from 'sharp';
import { decodeImage, decodePng, ImageDecodeError, orient, type RgbImage } from '../io/image.ts';

const DIR = new URL('./fixtures/jpeg/', import.meta.url);

interface Expected {
  file: string;
  width: number;
  height: number;
  sha256: string;
}
interface Fixture {
  file: string;
  format: 'jpeg' | 'webp' | 'gif' | 'tiff' | 'png';
  kind: string;
  bytes: number;
  sha256: string;
  mode: string;
  width: number;
  height: number;
  jpeg?: { sof: string; progressive: boolean; components: number; sampling: string; adobeTransform: number | null; restartInterval: number; icc: boolean; exif: boolean };
  exifOrientation?: number;
  expected: Expected;
  expectedApply?: Expected;
}

const index = JSON.parse(readFileSync(new URL('index.json', DIR), 'utf8')) as { pillow: string; libjpeg_turbo: string; files: Fixture[] };
const fixtureBytes = (file: string) => new Uint8Array(readFileSync(new URL(file, DIR)));
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Pillow's decode, read back with pngjs (independent of the decoder under test). */
function pillowDecode(e: Expected): RgbImage {
  const png = PNG.sync.read(readFileSync(new URL(e.file, DIR)));
  const data = new Uint8Array(png.width * png.height * 3);
  for (let p = 0; p < png.width * png.height; p++) data.set(png.data.subarray(p * 4, p * 4 + 3), p * 3);
  assert.is(sha256(data), e.sha256, `${e.file} matches its sha256 in index.json`);
  return { width: png.width, height: png.height, data };
}

/** Max absolute difference and the share of differing values; identical sizes asserted. */
function compare(got: RgbImage, want: RgbImage, what: string): { max: number; differing: number } {
  assert.equal([got.width, got.height], [want.width, want.height], `${what}: size`);
  let max = 0;
  let n = 0;
  for (let i = 0; i < want.data.length; i++) {
    const d = Math.abs(got.data[i] - want.data[i]);
    if (d) n++;
    if (d > max) max = d;
  }
  return { max, differing: n / want.data.length };
}

function assertIdentical(got: RgbImage, want: RgbImage, what: string): void {
  const { max, differing } = compare(got, want, what);
  assert.ok(max === 0, `${what}: differs from Pillow (max ${max}, ${(100 * differing).toFixed(1)} % of values)`);
}

const test = suite('decoding matches Pillow');

test('the fixture set covers every common JPEG kind', () => {
  const jpegs = index.files.filter((f) => f.format === 'jpeg').map((f) => f.jpeg!);
  const has = (p: (j: NonNullable<Fixture['jpeg']>) => boolean, what: string) => assert.ok(jpegs.some(p), `no fixture with ${what}`);
  has((j) => j.sof === 'SOF0', 'a baseline frame');
  has((j) => j.sof === 'SOF2' && j.components === 3, 'a progressive colour frame');
  has((j) => j.sof === 'SOF2' && j.components === 1, 'a progressive grayscale frame');
  for (const s of ['1x1,1x1,1x1', '2x1,1x1,1x1', '2x2,1x1,1x1', '4x1,1x1,1x1', '1x2,1x1,1x1']) has((j) => j.sampling === s, `sampling ${s}`);
  has((j) => j.components === 4 && j.adobeTransform === 0, 'Adobe CMYK');
  has((j) => j.components === 4 && j.adobeTransform === 2, 'YCCK');
  has((j) => j.components === 4 && j.adobeTransform === null, 'CMYK without an Adobe marker');
  has((j) => j.components === 3 && j.adobeTransform === 0, 'RGB without colour transform');
  has((j) => j.restartInterval > 0, 'restart markers');
  has((j) => j.icc, 'an ICC profile');
  const orientations = new Set(index.files.filter((f) => f.format === 'jpeg').map((f) => f.exifOrientation));
  for (let o = 1; o <= 8; o++) assert.ok(orientations.has(o), `no JPEG with EXIF orientation ${o}`);
  for (const f of index.files) {
    assert.is(sha256(fixtureBytes(f.file)), f.sha256, `${f.file} is the file index.json describes`);
    assert.ok(f.bytes < 30_000, `${f.file}: ${f.bytes} bytes (fixtures stay small)`);
  }
});

for (const f of index.files) {
  test(`${f.file}: ${f.kind}`, async () => {
    const bytes = fixtureBytes(f.file);
    const want = pillowDecode(f.expected);
    const got = await decodeImage(bytes, f.file);
    assertIdentical(got, want, `${f.file} (exifOrientation 'ignore', the default)`);
    assert.is(sha256(got.data), f.expected.sha256);
    assertIdentical(await decodeImage(bytes, f.file, { exifOrientation: 'ignore' }), want, `${f.file} 'ignore'`);
    const apply = await decodeImage(bytes, f.file, { exifOrientation: 'apply' });
    assertIdentical(apply, f.expectedApply ? pillowDecode(f.expectedApply) : want, `${f.file} (exifOrientation 'apply', as ImageOps.exif_transpose)`);
    if (f.format === 'png') {
      assertIdentical(decodePng(bytes, f.file), want, `${f.file} through the synchronous decodePng`);
      assertIdentical(decodePng(bytes, f.file, { exifOrientation: 'apply' }), pillowDecode(f.expectedApply ?? f.expected), `${f.file} decodePng 'apply'`);
    }
  });
}

test('EXIF orientation: the eight cases move pixels as exif_transpose, and only in apply mode', async () => {
  const upright = await decodeImage(fixtureBytes('exif_orientation_1.jpg'), 'o1');
  for (let o = 2; o <= 8; o++) {
    const bytes = fixtureBytes(`exif_orientation_${o}.jpg`);
    const stored = await decodeImage(bytes, `o${o}`);
    assert.equal(Array.from(stored.data), Array.from(upright.data), `orientation ${o} ignored by default: the stored pixels`);
    const turned = await decodeImage(bytes, `o${o}`, { exifOrientation: 'apply' });
    assert.equal([turned.width, turned.height], o >= 5 ? [upright.height, upright.width] : [upright.width, upright.height], `orientation ${o}: size`);
    assert.equal(Array.from(orient(upright, o).data), Array.from(turned.data), `orientation ${o}`);
  }
  // 6 = rotate 90 degrees clockwise: the stored bottom-left pixel lands top-left.
  const six = await decodeImage(fixtureBytes('exif_orientation_6.jpg'), 'o6', { exifOrientation: 'apply' });
  const at = (img: RgbImage, x: number, y: number) => Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
  assert.equal(at(six, 0, 0), at(upright, 0, upright.height - 1));
  const bad = await decodeImage(fixtureBytes('exif_orientation_6.jpg'), 'x', { exifOrientation: 'rotate' as 'apply' }).then(() => undefined, (e: Error) => e);
  assert.match(String(bad), /exifOrientation must be 'ignore' or 'apply', got "rotate"/);
});

test('the ICC fixture is not vacuous: colour-managing it (sharp\'s default) would change the pixels', async () => {
  const bytes = fixtureBytes('icc_p3.jpg');
  const managed = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const got = await decodeImage(bytes, 'icc_p3.jpg');
  const { max } = compare({ width: managed.info.width, height: managed.info.height, data: managed.data }, got, 'colour-managed');
  assert.ok(max > 10, `an ICC transform changes values by up to ${max}`);
});

test('truncated and damaged files are ImageDecodeErrors naming the file and what to do', async () => {
  const expectError = async (bytes: Uint8Array, pattern: RegExp, what: string) => {
    const err = await decodeImage(bytes, 'photo.x').then(() => undefined, (e: Error) => e);
    assert.instance(err, ImageDecodeError, `${what}: ${err}`);
    assert.ok(err!.message.startsWith('photo.x: '), `${what}: ${err!.message}`);
    assert.match(err!.message, pattern, `${what}: ${err!.message}`);
  };
  for (const file of ['baseline_420.jpg', 'progressive_422.jpg', 'cmyk_adobe.jpg']) {
    const b = fixtureBytes(file);
    const sos = Buffer.from(b).indexOf(Buffer.from([0xff, 0xda]));
    for (const cut of [3, 40, sos + 30, Math.floor((sos + b.length) / 2), b.length - 2]) {
      const want = cut > sos ? /truncated JPEG \(the file ends before its end-of-image marker\); copy or download it again/ : /truncated JPEG \(|corrupt or truncated JPEG \(/;
      await expectError(b.subarray(0, cut), want, `${file} cut at ${cut} of ${b.length}`);
    }
  }
  for (const file of ['webp_lossy.webp', 'gif.gif', 'tiff_lzw.tif']) {
    const b = fixtureBytes(file);
    for (const cut of [20, Math.floor(b.length / 2), b.length - 10]) await expectError(b.subarray(0, cut), /(truncated|corrupt or truncated) (WebP|GIF|TIFF)/, `${file} cut at ${cut}`);
  }
  const jpeg = fixtureBytes('baseline_420.jpg');
  const sof = Buffer.from(jpeg).indexOf(Buffer.from([0xff, 0xc0]));
  const twelveBit = jpeg.slice();
  twelveBit[sof + 4] = 12;
  await expectError(twelveBit, /a kind of JPEG that cannot be decoded here \(libvips: .*precision 12.*\); re-save it as an 8-bit RGB JPEG or PNG/, '12-bit JPEG');
  await expectError(Uint8Array.from([0, 0, 0, 24, ...Buffer.from('ftypheic'), 0, 0, 0, 0, ...Buffer.from('mif1heic')]), /HEIC .* maskgpu reads AVIF but not HEIC: convert it to JPEG or PNG/, 'HEIC');
  await expectError(Uint8Array.from(Buffer.from('BM\0\0\0\0\0\0\0\0', 'latin1')), /not a PNG or JPEG file, nor WebP, AVIF, TIFF or GIF \(starts with 42 4d .*\(looks like a BMP\); maskgpu reads PNG, JPEG, WebP, AVIF, TIFF and GIF/, 'BMP');
  await expectError(Uint8Array.from(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>')), /looks like text: HTML, SVG, XML or JSON/, 'SVG (never handed to librsvg)');
});

test('a JPEG missing only its end-of-image marker is refused, as Pillow refuses it; bytes after it are ignored, as Pillow ignores them', async () => {
  // Pillow 9.4 raises "image file is truncated" on both fixtures cut by 2 bytes (checked when
  // this test was written); libvips alone decodes some such files, so io/image.ts checks itself.
  for (const file of ['baseline_420.jpg', 'progressive_422.jpg', 'exif_orientation_6.jpg']) {
    const b = fixtureBytes(file);
    assert.equal(Array.from(b.subarray(-2)), [0xff, 0xd9]);
    const err = await decodeImage(b.subarray(0, b.length - 2), file).then(() => undefined, (e: Error) => e);
    assert.match(String(err), new RegExp(`${file}: truncated JPEG \\(the file ends before its end-of-image marker\\)`));
    const trailing = new Uint8Array(Buffer.concat([b, Buffer.from('\0junk'.repeat(20))]));
    const want = pillowDecode(index.files.find((f) => f.file === file)!.expected);
    assertIdentical(await decodeImage(trailing, file), want, `${file} with 100 bytes after its end`);
  }
});

test('an UltraHDR JPEG (sharp-written gain map) decodes to its SDR base image, as Pillow reads it', async () => {
  // libvips hands UltraHDR files to its uhdr loader; the base image must still be libjpeg's decode
  // of the primary JPEG (Pillow ignores the gain map appended after it: checked by hand, max diff 0).
  const src = pillowDecode(index.files.find((f) => f.file === 'baseline_444.jpg')!.expected);
  const raw = sharp(Buffer.from(src.data), { raw: { width: src.width, height: src.height, channels: 3 } });
  const withGainMap = raw as unknown as { withGainMap(): Sharp }; // sharp 0.35 API, not in its .d.mts yet
  const uhdr = new Uint8Array(await withGainMap.withGainMap().jpeg({ quality: 90 }).toBuffer());
  assert.ok((await sharp(uhdr).metadata()).gainMap, 'the file has a gain map');
  const eoi = Buffer.from(uhdr).indexOf(Buffer.from([0xff, 0xd9]), Buffer.from(uhdr).indexOf(Buffer.from([0xff, 0xda])));
  const primary = uhdr.slice(0, eoi + 2); // the primary JPEG alone, as a legacy decoder sees it
  assert.not.ok((await sharp(primary).metadata()).gainMap);
  assertIdentical(await decodeImage(uhdr, 'uhdr.jpg'), await decodeImage(primary, 'primary.jpg'), 'UltraHDR vs its primary image');
});

test('the pixel limit is read from every format\'s header before decoding', async () => {
  const webp = fixtureBytes('webp_lossless.webp'); // VP8L: 14-bit width-1 and height-1 after the 0x2f signature at byte 20
  const big = webp.slice();
  const view = new DataView(big.buffer);
  view.setUint32(21, (view.getUint32(21, true) & ~0x0fffffff) | 11999 | (11999 << 14), true);
  const err = await decodeImage(big, 'big.webp').then(() => undefined, (e: Error) => e);
  assert.match(String(err), /big\.webp: the WebP declares 12000x12000 pixels \(144\.0 MP\), over maskgpu's limit of 100 MP .*--max-megapixels/);
  for (const file of ['baseline_420.jpg', 'webp_lossy.webp', 'gif.gif', 'tiff_raw.tif', 'png_exif_orientation_6.png']) {
    const e = await decodeImage(fixtureBytes(file), file, { maxMegapixels: 0.0005 }).then(() => undefined, (x: Error) => x);
    assert.instance(e, ImageDecodeError, file);
    assert.match(e!.message, /pixels \(0\.0 MP\), over maskgpu's limit of 0\.0005 MP/, file);
  }
});

test('an AVIF (sharp-encoded, lossless) decodes to its source pixels', async () => {
  const src = pillowDecode(index.files.find((f) => f.file === 'webp_lossless.webp')!.expected);
  const avif = await sharp(Buffer.from(src.data), { raw: { width: src.width, height: src.height, channels: 3 } }).avif({ lossless: true }).toBuffer();
  const got = await decodeImage(new Uint8Array(avif), 'x.avif');
  assertIdentical(got, src, 'lossless AVIF');
});

test.run();
