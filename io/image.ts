// io/image.ts: image files in and out for the CLI, tests and benchmarks (Node only: node:fs,
// node:zlib and sharp's native libvips; the browser bundle must not import io/, a page gets its
// pixels from a canvas). Every file becomes 8-bit RGB the way a torchvision user's
// `Image.open(path).convert('RGB')` (Pillow) sees it:
// - PNG: decoded here (8-bit non-interlaced, the usual kind) or by pngjs (the rest); alpha is
//   dropped, not composited (PIL's RGBA->RGB conversion keeps the colour channels), so a tRNS
//   colour key is ignored too (pngjs would otherwise zero those pixels); grayscale is replicated
//   into R, G and B; palettes are expanded; 1/2/4-bit grayscale is scaled to 0..255
//   (v * 255 / (2^d - 1), as PIL); 16-bit samples become round(v * 255 / 65535) (pngjs; Pillow
//   9.4 takes the high byte of 16-bit RGB, so the two may differ by 1, and saturates 16-bit
//   grayscale, opened as mode I, to 0 or 255).
// - JPEG, WebP, AVIF, TIFF and GIF: decoded by sharp (libvips; its JPEG decoder is mozjpeg, a
//   libjpeg-turbo fork, so JPEGs decode bit-identically to Pillow's libjpeg-turbo: same IDCT, same
//   "fancy" chroma upsampling; tests/jpeg.test.ts checks every common kind). An embedded ICC
//   profile is ignored, as Pillow's convert('RGB') and a browser's createImageBitmap(..., {
//   colorSpaceConversion: 'none' }) ignore it. CMYK (Adobe CMYK and YCCK JPEGs, CMYK TIFFs) is
//   converted with Pillow's own formula, not a colour profile: R = (255 - K) - C * (255 - K) / 255
//   rounded as Pillow's MULDIV255 (likewise G from M, B from Y), where a JPEG's CMYK is always
//   read as Adobe-inverted, as Pillow does. Grayscale is replicated, alpha dropped (a GIF's
//   transparent pixels get their palette colour, as in Pillow's palette image). 16-bit samples
//   become their high byte (libvips; Pillow does the same for 16-bit RGB TIFF, but saturates
//   16-bit grayscale to 0 or 255). Only the first frame of an animated GIF or multi-page TIFF is
//   read, as Image.open does.
// - EXIF orientation: `exifOrientation: 'ignore'` (the default) keeps the stored pixels, as
//   Image.open(...).convert('RGB') and torchvision's datasets do; 'apply' rotates/flips them as
//   ImageOps.exif_transpose and browsers do (the Orientation tag of a JPEG, WebP or AVIF as
//   libvips reads it, or of a PNG's eXIf chunk). A TIFF is turned upright in both modes: Pillow's
//   TIFF loader applies its Orientation tag on open.
// Decoding refuses images over a pixel limit (MAX_MEGAPIXELS by default, `maxMegapixels` /
// `--max-megapixels` to change it) from the header, before anything is decoded or allocated, so
// a hostile header cannot exhaust memory, and refuses PNG data that inflates past what the
// header's size allows (a decompression bomb). Peak memory: about 9 bytes a pixel for 8-bit PNGs
// (decoded here), 15 for the other PNGs (pngjs), 3 for RGB and grayscale JPEGs (libvips's output
// buffer is the result) up to 7 for CMYK or alpha (libvips's bands plus the RGB copy); 'apply'
// with a rotation adds 3: 0.3 to 1.5 GB at the default limit.

import { readFile } from 'node:fs/promises';
import { PNG } from 'pngjs';
import { inflateSync } from 'node:zlib';
import type { Metadata, SharpOptions } from 'sharp';

export interface RgbImage {
  width: number;
  height: number;
  /** RGB, row-major, 3 bytes per pixel. */
  data: Uint8Array;
}

/** Any reason an image file could not be turned into pixels; the message names the file. */
export class ImageDecodeError extends Error {
  override name = 'ImageDecodeError';
}

/** Largest image decoded by default (width * height / 1e6), for every format alike. */
export const MAX_MEGAPIXELS = 100;

/**
 * What to do with an EXIF Orientation tag. 'ignore': the pixels as stored, as
 * `Image.open(path).convert('RGB')` (and so torchvision's datasets and reference scripts) gives
 * them. 'apply': rotated/flipped upright, as `ImageOps.exif_transpose` and browsers give them.
 */
export type ExifOrientationMode = 'ignore' | 'apply';
export const EXIF_ORIENTATION_MODES: readonly ExifOrientationMode[] = ['ignore', 'apply'];
/** torchvision's usual loading does not apply EXIF orientation. */
export const DEFAULT_EXIF_ORIENTATION: ExifOrientationMode = 'ignore';

export interface DecodeOptions {
  /** Refuse images over this many million pixels (default MAX_MEGAPIXELS). */
  maxMegapixels?: number;
  /** EXIF orientation handling (default 'ignore', as torchvision users load images). */
  exifOrientation?: ExifOrientationMode;
}

/** The formats maskgpu reads, as named in messages. */
export const READABLE_FORMATS = 'PNG, JPEG, WebP, AVIF, TIFF and GIF';

function pixelLimit(options: DecodeOptions): number {
  const mp = options.maxMegapixels ?? MAX_MEGAPIXELS;
  if (!(mp > 0)) throw new Error(`maxMegapixels must be a positive number, got ${mp}`);
  return mp;
}

function orientationMode(options: DecodeOptions): ExifOrientationMode {
  const mode = options.exifOrientation ?? DEFAULT_EXIF_ORIENTATION;
  if (!EXIF_ORIENTATION_MODES.includes(mode)) throw new Error(`exifOrientation must be 'ignore' or 'apply', got ${JSON.stringify(mode)}`);
  return mode;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(bytes: Uint8Array, prefix: readonly number[], at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  return prefix.every((b, i) => bytes[at + i] === b);
}

function ascii(bytes: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...bytes.subarray(at, at + n));
}

type Format = 'png' | 'jpeg' | 'webp' | 'gif' | 'tiff' | 'heif';
const FORMAT_NAMES: Record<Format, string> = { png: 'PNG', jpeg: 'JPEG', webp: 'WebP', gif: 'GIF', tiff: 'TIFF', heif: 'AVIF/HEIF' };
/** HEIF brands whose images are HEVC (HEIC): sharp's prebuilt libvips has no HEVC decoder. */
const HEVC_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'hevm', 'hevs']);

/** The format from the magic bytes (never the file name). */
function sniffFormat(bytes: Uint8Array): Format | undefined {
  if (startsWith(bytes, PNG_SIGNATURE)) return 'png';
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 4) === 'WEBP') return 'webp';
  if (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a') return 'gif';
  if (ascii(bytes, 0, 4) === 'II*\0' || ascii(bytes, 0, 4) === 'MM\0*') return 'tiff';
  if (ascii(bytes, 4, 4) === 'ftyp' && /^(avif|avis|mif1|msf1|heic|heix|heim|heis|hevc|hevx|hevm|hevs)$/.test(ascii(bytes, 8, 4))) return 'heif';
  return undefined;
}

/** A hint for the formats people most often hand over by mistake. */
function guessOtherFormat(bytes: Uint8Array): string {
  if (ascii(bytes, 0, 4) === 'GIF8') return ' (looks like a damaged GIF)';
  if (ascii(bytes, 0, 2) === 'BM') return ' (looks like a BMP)';
  if (ascii(bytes, 0, 4) === 'RIFF') return ' (looks like a RIFF file that is not a WebP: AVI or WAV?)';
  if (ascii(bytes, 4, 4) === 'ftyp') return ` (looks like an MP4/QuickTime file, brand ${JSON.stringify(ascii(bytes, 8, 4))})`;
  if (startsWith(bytes, [0xff, 0x0a]) || ascii(bytes, 4, 4) === 'JXL ') return ' (looks like a JPEG XL)';
  if (ascii(bytes, 4, 8) === 'jP  \r\n\x87\n' || startsWith(bytes, [0xff, 0x4f, 0xff, 0x51])) return ' (looks like a JPEG 2000)';
  if (bytes[0] === 0x3c || bytes[0] === 0x7b) return ' (looks like text: HTML, SVG, XML or JSON)';
  return '';
}

function checkDimensions(name: string, kind: string, width: number, height: number, maxMegapixels: number): void {
  if (width === 0 || height === 0) throw new ImageDecodeError(`${name}: the ${kind} is ${width}x${height} pixels; an image needs at least one pixel`);
  const mp = (width * height) / 1e6;
  if (mp > maxMegapixels) {
    throw new ImageDecodeError(
      `${name}: the ${kind} declares ${width}x${height} pixels (${mp.toFixed(1)} MP), over maskgpu's limit of ${maxMegapixels} MP ` +
        `(decoding takes up to 15 bytes a pixel; --max-megapixels changes the limit); downscale it first`,
    );
  }
}

/**
 * Decodes a PNG, JPEG, WebP, AVIF, TIFF or GIF (detected by its magic bytes, not its name) to
 * 8-bit RGB as Pillow's `Image.open(...).convert('RGB')` does (see the top of this file).
 * Asynchronous because sharp (libvips) decodes off the main thread; `decodePng` is the
 * synchronous PNG-only path.
 */
export async function decodeImage(bytes: Uint8Array, name = 'image', options: DecodeOptions = {}): Promise<RgbImage> {
  const maxMegapixels = pixelLimit(options);
  const mode = orientationMode(options);
  if (bytes.length === 0) throw new ImageDecodeError(`${name}: the file is empty (0 bytes)`);
  const format = sniffFormat(bytes);
  if (format === 'png') return decodePng(bytes, name, options);
  if (format) return decodeWithSharp(bytes, name, format, maxMegapixels, mode);
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new ImageDecodeError(`${name}: not a PNG or JPEG file, nor WebP, AVIF, TIFF or GIF (starts with ${head})${guessOtherFormat(bytes)}; maskgpu reads ${READABLE_FORMATS}: convert it to PNG or JPEG`);
}

/** The synchronous PNG-only decoder (same pixels as decodeImage on a PNG). */
export function decodePng(bytes: Uint8Array, name = 'image', options: DecodeOptions = {}): RgbImage {
  const maxMegapixels = pixelLimit(options);
  const mode = orientationMode(options);
  if (bytes.length === 0) throw new ImageDecodeError(`${name}: the file is empty (0 bytes)`);
  if (!startsWith(bytes, PNG_SIGNATURE)) throw new ImageDecodeError(`${name}: not a PNG file (no PNG signature); decodeImage reads ${READABLE_FORMATS}`);
  const { image, exif } = decodePngPixels(bytes, name, maxMegapixels);
  return mode === 'apply' && exif ? orient(image, exifOrientation(exif)) : image;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Walks the chunk list before pngjs sees it, because pngjs reports a damaged or cut-off file
 * as "unrecognised content at end of stream" or "read requests waiting on finished stream".
 * Checks every chunk's CRC and that the file reaches IEND; drops anything after IEND (PIL
 * ignores trailing bytes, pngjs rejects them) and drops tRNS chunks so pngjs does not zero the
 * colour of key-transparent pixels (the alpha is dropped anyway).
 */
function checkedPngChunks(bytes: Uint8Array, name: string, maxInflatedBytes: number): { cleaned: Uint8Array; scanlines: Uint8Array; exif?: Uint8Array } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keep: Uint8Array[] = [bytes.subarray(0, 8)];
  let at = 8;
  let last = 'the signature';
  let droppedTrns = false;
  const idat: Uint8Array[] = [];
  let exif: Uint8Array | undefined;
  for (;;) {
    if (at + 12 > bytes.length) throw new ImageDecodeError(`${name}: truncated PNG (the file ends after ${last}, before the IEND chunk)`);
    const length = view.getUint32(at);
    const type = ascii(bytes, at + 4, 4);
    const end = at + 12 + length;
    if (end > bytes.length) {
      throw new ImageDecodeError(`${name}: truncated PNG (chunk ${JSON.stringify(type)} declares ${length} bytes, ${Math.max(0, bytes.length - at - 12)} are left)`);
    }
    if (crc32(bytes.subarray(at + 4, end - 4)) !== view.getUint32(end - 4)) {
      throw new ImageDecodeError(`${name}: corrupt PNG (chunk ${JSON.stringify(type)} at byte ${at} fails its CRC check: the file is damaged)`);
    }
    if (type === 'tRNS') droppedTrns = true;
    else keep.push(bytes.subarray(at, end));
    if (type === 'IDAT') idat.push(bytes.subarray(at + 8, end - 4));
    if (type === 'eXIf') exif ??= bytes.subarray(at + 8, end - 4);
    last = `chunk ${JSON.stringify(type)}`;
    at = end;
    if (type === 'IEND') break;
  }
  // pngjs's synchronous inflate does not always report a damaged stream (seen: a stored block
  // turned into an invalid block type decoded "fine" in some runs), so zlib checks it first.
  let scanlines: Uint8Array;
  try {
    scanlines = inflateSync(Buffer.concat(idat), { maxOutputLength: maxInflatedBytes });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new ImageDecodeError(`${name}: the PNG's image data inflates past the ${maxInflatedBytes} bytes its size allows (a decompression bomb or a corrupt file)`);
    }
    throw new ImageDecodeError(`${name}: corrupt or truncated PNG (zlib: ${(e as Error).message})`);
  }
  if (!droppedTrns && at === bytes.length) return { cleaned: bytes, scanlines, exif };
  const out = new Uint8Array(keep.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of keep) {
    out.set(c, o);
    o += c.length;
  }
  return { cleaned: out, scanlines, exif };
}

/**
 * 8-bit, non-interlaced gray, gray+alpha, RGB and RGBA (what cameras, browsers and most tools
 * write) straight from the inflated scanlines to RGB: PNG's five row filters undone in place,
 * then alpha dropped or gray replicated. About 9 bytes a pixel at the peak, where pngjs (RGBA
 * output, its own inflate) takes about 15; every other PNG goes through pngjs.
 */
function decodePlainPng(scanlines: Uint8Array, width: number, height: number, channels: number, name: string): Uint8Array {
  const stride = width * channels;
  if (scanlines.length < height * (stride + 1)) {
    throw new ImageDecodeError(`${name}: corrupt or truncated PNG (its image data has ${scanlines.length} bytes, ${width}x${height} needs ${height * (stride + 1)})`);
  }
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = y * (stride + 1) + 1;
    const prior = row - stride - 1; // the previous row's first byte (unused for y = 0)
    const filter = scanlines[row - 1];
    const line = scanlines.subarray(row, row + stride);
    if (filter === 1) for (let i = channels; i < stride; i++) line[i] += line[i - channels];
    else if (filter === 2 && y > 0) for (let i = 0; i < stride; i++) line[i] += scanlines[prior + i];
    else if (filter === 3) {
      for (let i = 0; i < stride; i++) line[i] += ((i >= channels ? line[i - channels] : 0) + (y > 0 ? scanlines[prior + i] : 0)) >> 1;
    } else if (filter === 4) {
      for (let i = 0; i < stride; i++) {
        const a = i >= channels ? line[i - channels] : 0;
        const b = y > 0 ? scanlines[prior + i] : 0;
        const c = i >= channels && y > 0 ? scanlines[prior + i - channels] : 0;
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        line[i] += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
    } else if (filter > 4) throw new ImageDecodeError(`${name}: corrupt PNG (row ${y} has filter type ${filter}; PNG has 0 to 4)`);
    const out = y * width * 3;
    if (channels === 3) rgb.set(line, out);
    else {
      const color = channels >= 3; // 4: RGBA; 1, 2: gray (+ alpha)
      for (let x = 0, i = 0, o = out; x < width; x++, i += channels, o += 3) {
        rgb[o] = line[i];
        rgb[o + 1] = line[color ? i + 1 : i];
        rgb[o + 2] = line[color ? i + 2 : i];
      }
    }
  }
  return rgb;
}

/**
 * Bytes of filtered scanlines a PNG of this header inflates to, with room for Adam7 interlacing
 * (7 passes: at most 7 more filter bytes and 7 more partial bytes per row).
 */
function maxScanlineBytes(width: number, height: number, bitDepth: number, colorType: number): number {
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType] ?? 4;
  return height * (1 + Math.ceil((width * channels * bitDepth) / 8)) + 14 * (height + 8);
}

function decodePngPixels(bytes: Uint8Array, name: string, maxMegapixels: number): { image: RgbImage; exif?: Uint8Array } {
  // IHDR is always the first chunk: length(4) 'IHDR'(4) width(4) height(4) depth(1) colour type(1) at offset 8.
  if (bytes.length < 33 || ascii(bytes, 12, 4) !== 'IHDR') throw new ImageDecodeError(`${name}: corrupt or truncated PNG (no IHDR header chunk)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [width, height] = [view.getUint32(16), view.getUint32(20)];
  checkDimensions(name, 'PNG', width, height, maxMegapixels);
  const [depth, colorType, compression, filterMethod, interlace] = bytes.subarray(24, 29);
  const { cleaned, scanlines, exif } = checkedPngChunks(bytes, name, maxScanlineBytes(width, height, Math.min(depth, 16), colorType));
  const plainChannels = ({ 0: 1, 2: 3, 4: 2, 6: 4 } as Record<number, number>)[colorType];
  if (depth === 8 && interlace === 0 && compression === 0 && filterMethod === 0 && plainChannels) {
    return { image: { width, height, data: decodePlainPng(scanlines, width, height, plainChannels, name) }, exif };
  }
  let png: PNG;
  try {
    // CRCs were checked above.
    png = PNG.sync.read(Buffer.from(cleaned.buffer, cleaned.byteOffset, cleaned.byteLength), { checkCRC: false });
  } catch (e) {
    throw new ImageDecodeError(`${name}: corrupt or truncated PNG (pngjs: ${(e as Error).message})`);
  }
  const rgba = png.data; // pngjs always hands back 8-bit RGBA after normalising
  if (png.width !== width || png.height !== height || rgba.length < width * height * 4) throw new ImageDecodeError(`${name}: corrupt PNG (pngjs returned ${rgba.length} bytes for ${width}x${height} RGBA)`);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; j < data.length; i += 4, j += 3) {
    data[j] = rgba[i];
    data[j + 1] = rgba[i + 1];
    data[j + 2] = rgba[i + 2];
  }
  return { image: { width, height, data }, exif };
}

/** Width and height from the first SOF marker, or undefined if the header ends before one. */
function jpegFrameSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  let at = 2;
  while (at + 9 < bytes.length) {
    if (bytes[at] !== 0xff) return undefined;
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: (bytes[at + 5] << 8) | bytes[at + 6], width: (bytes[at + 7] << 8) | bytes[at + 8] };
    }
    if (marker === 0xda) return undefined; // scan data before any frame header
    at += 2 + length;
  }
  return undefined;
}

/**
 * True when the frame's scan data starts (an SOS marker, found by walking the marker segments, so
 * an EXIF thumbnail's own markers are skipped) but no EOI marker follows: a cut-off download.
 * Pillow refuses such files ("image file is truncated") even when every scan is complete.
 */
function endsBeforeEndOfImage(bytes: Uint8Array): boolean {
  let at = 2;
  while (at + 4 <= bytes.length && bytes[at] === 0xff) {
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    if (marker === 0xd9) return false;
    at += 2 + ((bytes[at + 2] << 8) | bytes[at + 3]);
    if (marker === 0xda) {
      // Entropy-coded data stuffs every 0xff with 0x00, so 0xff 0xd9 is the end-of-image marker.
      for (let i = at; i + 1 < bytes.length; i++) if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return false;
      return true;
    }
  }
  return at >= bytes.length; // the header itself is cut off
}

type SharpFunction = typeof import('sharp').default;
let sharpModule: Promise<SharpFunction> | undefined;

/** sharp (a native addon) is loaded on the first non-PNG image, so PNG-only users never load libvips. */
async function loadSharp(name: string, kind: string): Promise<SharpFunction> {
  sharpModule ??= import('sharp').then((m) => m.default);
  try {
    return await sharpModule;
  } catch (e) {
    sharpModule = undefined;
    throw new ImageDecodeError(
      `${name}: cannot decode a ${kind}: the sharp package (libvips) failed to load (${(e as Error).message}); ` +
        `reinstall dependencies with \`npm ci\` on this platform, or convert the image to PNG, which maskgpu decodes without it`,
    );
  }
}

function libvipsMessage(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  // libvips repeats a loader's complaint once per attempt; keep each line once.
  return [...new Set(message.split('\n').map((l) => l.trim()).filter(Boolean))].join('; ');
}

function sharpDecodeError(e: unknown, bytes: Uint8Array, name: string, format: Format): ImageDecodeError {
  if (e instanceof ImageDecodeError) return e;
  const kind = FORMAT_NAMES[format];
  const why = libvipsMessage(e);
  if (/exceeds pixel limit/i.test(why)) return new ImageDecodeError(`${name}: the ${kind} is over maskgpu's pixel limit (libvips: ${why}); --max-megapixels changes the limit`);
  if (/unsupported image format/i.test(why)) {
    // The magic bytes said `kind`, but libvips's own sniffing (more of the header) disagrees.
    return new ImageDecodeError(`${name}: corrupt or truncated ${kind} (its header is damaged; libvips: ${why}); re-save it or download it again`);
  }
  if (/premature end|truncated|unexpected end|end of (file|stream|data)|not enough data/i.test(why)) {
    return new ImageDecodeError(`${name}: truncated ${kind} (libvips: ${why}); copy or download it again`);
  }
  if (format === 'heif' && HEVC_BRANDS.has(ascii(bytes, 8, 4))) {
    return new ImageDecodeError(`${name}: HEIC (HEVC-coded HEIF) images cannot be decoded here (libvips: ${why}); maskgpu reads AVIF but not HEIC: convert it to JPEG or PNG`);
  }
  if (/unsupported|not supported|cannot handle|data precision|unknown|no decoding plugin/i.test(why)) {
    return new ImageDecodeError(`${name}: a kind of ${kind} that cannot be decoded here (libvips: ${why}); re-save it as an 8-bit RGB JPEG or PNG`);
  }
  return new ImageDecodeError(`${name}: corrupt or truncated ${kind} (libvips: ${why}); the file is damaged: re-save it or download it again`);
}

/** Pillow's MULDIV255: round(a * b / 255) for 8-bit a and b, as ImagingConvert computes it. */
function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/**
 * CMYK (the first 4 of `channels` bands; 0 = no ink) to RGB as Pillow 9.4's cmyk2rgb:
 * R = (255 - K) - MULDIV255(C, 255 - K), likewise G from M and B from Y. A JPEG's CMYK arrives
 * here already un-inverted: libvips, like Pillow ("CMYK;I"), reads every 4-component JPEG as
 * Adobe-inverted, Adobe marker or not (tests/jpeg.test.ts has a file without one).
 */
function cmykToRgb(src: Uint8Array, pixels: number, channels: number): Uint8Array {
  const rgb = new Uint8Array(pixels * 3);
  for (let p = 0, i = 0, o = 0; p < pixels; p++, i += channels, o += 3) {
    const nk = 255 - src[i + 3];
    rgb[o] = nk - mulDiv255(src[i], nk);
    rgb[o + 1] = nk - mulDiv255(src[i + 1], nk);
    rgb[o + 2] = nk - mulDiv255(src[i + 2], nk);
  }
  return rgb;
}

/**
 * The palette colour of the first frame's transparent index, if the GIF has one: Pillow opens
 * the first frame as a palette image, so convert('RGB') gives transparent pixels that colour,
 * where libvips hands back (0, 0, 0) with alpha 0.
 */
function gifTransparentColour(bytes: Uint8Array): [number, number, number] | undefined {
  if (bytes.length < 13) return undefined;
  const tableAt = (packed: number, at: number) => (packed & 0x80 ? { at, size: 2 << (packed & 7) } : undefined);
  const global = tableAt(bytes[10], 13);
  let at = 13 + (global ? global.size * 3 : 0);
  let transparent: number | undefined;
  while (at < bytes.length) {
    const block = bytes[at];
    if (block === 0x21) {
      if (bytes[at + 1] === 0xf9 && bytes[at + 2] === 4 && at + 6 < bytes.length) transparent = bytes[at + 3] & 1 ? bytes[at + 6] : undefined;
      at += 2;
      while (at < bytes.length && bytes[at] !== 0) at += bytes[at] + 1; // sub-blocks
      at++;
    } else if (block === 0x2c) {
      if (transparent === undefined || at + 10 > bytes.length) return undefined;
      const table = tableAt(bytes[at + 9], at + 10) ?? global;
      if (!table || transparent >= table.size || table.at + 3 * transparent + 3 > bytes.length) return undefined;
      const c = table.at + 3 * transparent;
      return [bytes[c], bytes[c + 1], bytes[c + 2]];
    } else return undefined;
  }
  return undefined;
}

/** The first three bands of each pixel (alpha dropped), or band 0 three times when `gray`. */
function toRgb(src: Uint8Array, pixels: number, channels: number, gray: boolean): Uint8Array {
  if (channels === 3 && !gray) return src;
  const rgb = new Uint8Array(pixels * 3);
  for (let p = 0, i = 0, o = 0; p < pixels; p++, i += channels, o += 3) {
    rgb[o] = src[i];
    rgb[o + 1] = src[gray ? i : i + 1];
    rgb[o + 2] = src[gray ? i : i + 2];
  }
  return rgb;
}

async function decodeWithSharp(bytes: Uint8Array, name: string, format: Format, maxMegapixels: number, mode: ExifOrientationMode): Promise<RgbImage> {
  const kind = FORMAT_NAMES[format];
  if (format === 'jpeg') {
    // Our own read of the frame header: a refusal that names the limit even where libvips would
    // fail first (or allocate first).
    const frame = jpegFrameSize(bytes);
    if (frame) checkDimensions(name, kind, frame.width, frame.height, maxMegapixels);
    // libvips decodes a file whose scans are complete but whose end is cut off; Pillow refuses it.
    if (endsBeforeEndOfImage(bytes)) throw new ImageDecodeError(`${name}: truncated JPEG (the file ends before its end-of-image marker); copy or download it again`);
  }
  const sharp = await loadSharp(name, kind);
  const input: SharpOptions = {
    // Warnings (junk before a marker, a corrupt entropy segment that libjpeg resyncs past) decode
    // as Pillow decodes them; errors and truncation refuse the file, as Pillow raises on them.
    failOn: 'error',
    // A second check of the header's size, by libvips, before it decodes anything.
    limitInputPixels: Math.max(1, Math.floor(maxMegapixels * 1e6)),
    ignoreIcc: true, // Pillow's convert('RGB') and colorSpaceConversion: 'none' ignore the profile
    sequentialRead: true,
    page: 0,
    pages: 1, // the first frame of an animated GIF or a multi-page TIFF, as Image.open
  };
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let meta: Metadata;
  try {
    // The header only (no pixels), without libvips's limit, so that an oversized image gets the
    // message below, which names the size and the flag.
    meta = await sharp(buffer, { ...input, limitInputPixels: false }).metadata();
  } catch (e) {
    throw sharpDecodeError(e, bytes, name, format);
  }
  if (meta.format !== format) throw new ImageDecodeError(`${name}: looks like a ${kind} but libvips reads it as ${meta.format ?? 'nothing it knows'}; re-save it as PNG or JPEG`);
  const [width, height] = [meta.width ?? 0, meta.pageHeight ?? meta.height ?? 0];
  checkDimensions(name, kind, width, height, maxMegapixels);
  const cmyk = meta.space === 'cmyk';
  const gray = meta.space === 'b-w' || meta.space === 'grey16';
  let pipeline = sharp(buffer, input);
  // Bands as decoded: libvips's own CMYK->sRGB (an ICC transform) and gray->sRGB are skipped and
  // done below as Pillow does them.
  if (cmyk) pipeline = pipeline.pipelineColourspace('cmyk').toColourspace('cmyk');
  else if (gray) pipeline = pipeline.toColourspace('b-w');
  let decoded: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    decoded = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw sharpDecodeError(e, bytes, name, format);
  }
  const { info } = decoded;
  const src = new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, decoded.data.byteLength);
  const pixels = info.width * info.height;
  const bands = cmyk ? 4 : gray ? 1 : 3;
  if (info.width !== width || info.height !== height || info.channels < bands || src.length !== pixels * info.channels) {
    throw new ImageDecodeError(`${name}: corrupt ${kind} (libvips decoded ${src.length} bytes, ${info.width}x${info.height}x${info.channels}, for a ${width}x${height} image)`);
  }
  const data = cmyk ? cmykToRgb(src, pixels, info.channels) : toRgb(src, pixels, info.channels, gray);
  const key = format === 'gif' && info.channels === 4 ? gifTransparentColour(bytes) : undefined;
  if (key) for (let p = 0; p < pixels; p++) if (src[p * 4 + 3] === 0) data.set(key, p * 3);
  const image = { width, height, data };
  // Pillow's TIFF loader applies a TIFF's Orientation tag on open, so a TIFF is upright in both modes.
  return (mode === 'apply' || format === 'tiff') && meta.orientation ? orient(image, meta.orientation) : image;
}

/** The Orientation tag (1..8) of an EXIF block (a TIFF header and IFD0, "Exif\0\0" optional), else 1. */
function exifOrientation(exif: Uint8Array): number {
  const d = ascii(exif, 0, 6) === 'Exif\0\0' ? exif.subarray(6) : exif;
  const order = ascii(d, 0, 2);
  if (d.length < 8 || (order !== 'II' && order !== 'MM')) return 1;
  const le = order === 'II';
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const ifd = view.getUint32(4, le);
  if (ifd + 2 > d.length) return 1;
  for (let i = 0, n = view.getUint16(ifd, le); i < n; i++) {
    const e = ifd + 2 + 12 * i;
    if (e + 12 > d.length) break;
    if (view.getUint16(e, le) !== 0x0112) continue;
    const type = view.getUint16(e + 2, le);
    const value = type === 3 ? view.getUint16(e + 8, le) : type === 4 ? view.getUint32(e + 8, le) : 1;
    return value >= 1 && value <= 8 ? value : 1;
  }
  return 1;
}

/**
 * The pixels turned upright for an EXIF orientation, as ImageOps.exif_transpose: 2 mirror,
 * 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90
 * counter-clockwise. Exact: pixels are only moved.
 */
export function orient(image: RgbImage, orientation: number): RgbImage {
  if (!(orientation >= 2 && orientation <= 8)) return image;
  const { width: w, height: h, data } = image;
  const swap = orientation >= 5;
  const [ow, oh] = swap ? [h, w] : [w, h];
  const out = new Uint8Array(data.length);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let sx: number;
      let sy: number;
      switch (orientation) {
        case 2: [sx, sy] = [w - 1 - x, y]; break;
        case 3: [sx, sy] = [w - 1 - x, h - 1 - y]; break;
        case 4: [sx, sy] = [x, h - 1 - y]; break;
        case 5: [sx, sy] = [y, x]; break;
        case 6: [sx, sy] = [y, h - 1 - x]; break;
        case 7: [sx, sy] = [w - 1 - y, h - 1 - x]; break;
        default: [sx, sy] = [w - 1 - y, x]; break; // 8
      }
      const i = (sy * w + sx) * 3;
      const o = (y * ow + x) * 3;
      out[o] = data[i];
      out[o + 1] = data[i + 1];
      out[o + 2] = data[i + 2];
    }
  }
  return { width: ow, height: oh, data: out };
}

/** Reads and decodes an image file; an unreadable file is an ImageDecodeError naming the path. */
export async function readImageFile(path: string, options: DecodeOptions = {}): Promise<RgbImage> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory, not an image file' : err.message;
    throw new ImageDecodeError(`${path}: cannot read the image: ${why}`);
  }
  return decodeImage(bytes, path, options);
}

/** Encodes 8-bit RGB as a PNG (colour type 2, no alpha). */
export function encodePng(img: RgbImage): Uint8Array {
  if (img.data.length !== img.width * img.height * 3) {
    throw new Error(`encodePng: ${img.data.length} bytes of data for a ${img.width}x${img.height} RGB image (expected ${img.width * img.height * 3})`);
  }
  const data = Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  // pngjs only reads width, height and data from the PNG object it is given.
  const source = { width: img.width, height: img.height, data } as unknown as PNG;
  // Level 6 is zlib's default: level 9 (pngjs's default) is several times slower on photos for ~2% smaller files.
  const out = PNG.sync.write(source, { colorType: 2, inputColorType: 2, inputHasAlpha: false, deflateLevel: 6 });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}
