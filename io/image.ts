// io/image.ts: image files in and out for the CLI, tests and benchmarks (Node only: node:fs and
// node:zlib; the browser bundle must not import io/, a page gets its pixels from a canvas).
// PNG (8-bit non-interlaced ones decoded here, the rest via pngjs) and JPEG via jpeg-js, decoded
// to 8-bit RGB the way a torchvision user's `Image.open(path).convert('RGB')` sees them:
// - alpha is dropped, not composited (PIL's RGBA->RGB conversion keeps the colour channels);
//   for the same reason a PNG tRNS colour key is ignored (pngjs would otherwise zero those pixels);
// - grayscale is replicated into R, G and B; palette PNGs are expanded; 1/2/4-bit grayscale is
//   scaled to 0..255 (v * 255 / (2^d - 1), as PIL);
// - 16-bit PNG samples are scaled to 8 bit as round(v * 255 / 65535) (pngjs; PIL truncates to
//   the high byte instead, so the two may differ by 1);
// - Adobe CMYK and YCCK JPEGs are converted to RGB by jpeg-js; EXIF orientation is not applied
//   (PIL's Image.open does not apply it either).
// Decoding refuses images over a pixel limit (MAX_MEGAPIXELS by default, `maxMegapixels` /
// `--max-megapixels` to change it) before allocating anything, so a hostile header cannot exhaust
// memory, and refuses PNG data that inflates past what the header's size allows (a
// decompression bomb). Decoding peaks at about 9 bytes a pixel for 8-bit PNGs (the usual kind,
// decoded here) and 15 for the others (pngjs): 0.9 to 1.5 GB at the default limit.

import { readFile } from 'node:fs/promises';
import * as jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { inflateSync } from 'node:zlib';

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

/** Largest image decoded by default (width * height / 1e6), for PNG and JPEG alike. */
export const MAX_MEGAPIXELS = 100;
/** jpeg-js's own cap on the memory it allocates while decoding, at the default pixel limit. */
export const MAX_JPEG_MEMORY_MB = 1024;

export interface DecodeOptions {
  /** Refuse images over this many million pixels (default MAX_MEGAPIXELS). */
  maxMegapixels?: number;
}

function pixelLimit(options: DecodeOptions): number {
  const mp = options.maxMegapixels ?? MAX_MEGAPIXELS;
  if (!(mp > 0)) throw new Error(`maxMegapixels must be a positive number, got ${mp}`);
  return mp;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(bytes: Uint8Array, prefix: readonly number[], at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  return prefix.every((b, i) => bytes[at + i] === b);
}

function ascii(bytes: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...bytes.subarray(at, at + n));
}

/** A hint for the formats people most often hand over by mistake. */
function guessOtherFormat(bytes: Uint8Array): string {
  if (ascii(bytes, 0, 4) === 'GIF8') return ' (looks like a GIF)';
  if (ascii(bytes, 0, 2) === 'BM') return ' (looks like a BMP)';
  if (ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 4) === 'WEBP') return ' (looks like a WebP)';
  if (ascii(bytes, 0, 4) === 'II*\0' || ascii(bytes, 0, 4) === 'MM\0*') return ' (looks like a TIFF)';
  if (ascii(bytes, 4, 4) === 'ftyp') return ' (looks like HEIF/AVIF or an MP4)';
  if (bytes[0] === 0x3c || bytes[0] === 0x7b) return ' (looks like text: HTML, XML or JSON)';
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

/** Decodes a PNG or JPEG (detected by its magic bytes, not its name) to 8-bit RGB. */
export function decodeImage(bytes: Uint8Array, name = 'image', options: DecodeOptions = {}): RgbImage {
  const maxMegapixels = pixelLimit(options);
  if (bytes.length === 0) throw new ImageDecodeError(`${name}: the file is empty (0 bytes)`);
  if (startsWith(bytes, PNG_SIGNATURE)) return decodePng(bytes, name, maxMegapixels);
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return decodeJpeg(bytes, name, maxMegapixels);
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new ImageDecodeError(`${name}: not a PNG or JPEG file (starts with ${head})${guessOtherFormat(bytes)}; maskgpu reads PNG and JPEG`);
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
function checkedPngChunks(bytes: Uint8Array, name: string, maxInflatedBytes: number): { cleaned: Uint8Array; scanlines: Uint8Array } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keep: Uint8Array[] = [bytes.subarray(0, 8)];
  let at = 8;
  let last = 'the signature';
  let droppedTrns = false;
  const idat: Uint8Array[] = [];
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
  if (!droppedTrns && at === bytes.length) return { cleaned: bytes, scanlines };
  const out = new Uint8Array(keep.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of keep) {
    out.set(c, o);
    o += c.length;
  }
  return { cleaned: out, scanlines };
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

function decodePng(bytes: Uint8Array, name: string, maxMegapixels: number): RgbImage {
  // IHDR is always the first chunk: length(4) 'IHDR'(4) width(4) height(4) depth(1) colour type(1) at offset 8.
  if (bytes.length < 33 || ascii(bytes, 12, 4) !== 'IHDR') throw new ImageDecodeError(`${name}: corrupt or truncated PNG (no IHDR header chunk)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [width, height] = [view.getUint32(16), view.getUint32(20)];
  checkDimensions(name, 'PNG', width, height, maxMegapixels);
  const [depth, colorType, compression, filterMethod, interlace] = bytes.subarray(24, 29);
  const { cleaned, scanlines } = checkedPngChunks(bytes, name, maxScanlineBytes(width, height, Math.min(depth, 16), colorType));
  const plainChannels = ({ 0: 1, 2: 3, 4: 2, 6: 4 } as Record<number, number>)[colorType];
  if (depth === 8 && interlace === 0 && compression === 0 && filterMethod === 0 && plainChannels) return { width, height, data: decodePlainPng(scanlines, width, height, plainChannels, name) };
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
  return { width, height, data };
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

/** True when scan data starts (an SOS marker) but no EOI marker follows it: a cut-off download. */
function endsBeforeEndOfImage(bytes: Uint8Array): boolean {
  let sos = -1;
  for (let i = 2; i + 1 < bytes.length; i++) {
    if (bytes[i] !== 0xff) continue;
    if (sos < 0 && bytes[i + 1] === 0xda) sos = i;
    else if (sos >= 0 && bytes[i + 1] === 0xd9) return false;
  }
  return sos >= 0;
}

function decodeJpeg(bytes: Uint8Array, name: string, maxMegapixels: number): RgbImage {
  const frame = jpegFrameSize(bytes);
  if (frame) checkDimensions(name, 'JPEG', frame.width, frame.height, maxMegapixels);
  const maxMemoryUsageInMB = Math.max(MAX_JPEG_MEMORY_MB, Math.ceil((MAX_JPEG_MEMORY_MB * maxMegapixels) / MAX_MEGAPIXELS));
  let decoded: { width: number; height: number; data: Uint8Array };
  try {
    decoded = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      maxResolutionInMP: maxMegapixels,
      maxMemoryUsageInMB,
    });
  } catch (e) {
    const message = (e as Error).message ?? String(e);
    if (/maxResolutionInMP|maxMemoryUsageInMB|allocate/.test(message)) {
      throw new ImageDecodeError(
        `${name}: JPEG too large to decode (jpeg-js: ${message}); maskgpu's limits are ${maxMegapixels} MP and ${maxMemoryUsageInMB} MB of decoder memory`,
      );
    }
    if (/4 components/.test(message)) {
      throw new ImageDecodeError(
        `${name}: 4-channel (CMYK) JPEG without an Adobe colour-space marker cannot be converted to RGB; re-save it as an RGB JPEG or PNG`,
      );
    }
    if (/Unsupported color mode/.test(message)) throw new ImageDecodeError(`${name}: JPEG in an unsupported colour space (jpeg-js: ${message}); re-save it as an RGB JPEG or PNG`);
    if (endsBeforeEndOfImage(bytes)) throw new ImageDecodeError(`${name}: truncated JPEG (the file ends before its end-of-image marker; jpeg-js: ${message})`);
    throw new ImageDecodeError(`${name}: corrupt or truncated JPEG (jpeg-js: ${message})`);
  }
  checkDimensions(name, 'JPEG', decoded.width, decoded.height, maxMegapixels);
  if (decoded.data.length !== decoded.width * decoded.height * 3) {
    throw new ImageDecodeError(`${name}: corrupt JPEG (jpeg-js returned ${decoded.data.length} bytes for ${decoded.width}x${decoded.height} RGB)`);
  }
  return { width: decoded.width, height: decoded.height, data: decoded.data };
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
