// safetensors reader and writer (https://github.com/huggingface/safetensors, "Format" section):
// 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
// `{ name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string} }`, then
// the data buffer, offsets relative to its start. Every declared size is checked against the real
// file size before anything is allocated, so a lying header cannot exhaust memory. Float tensors
// (F32, F16, BF16, F64) are decoded exactly to Float32Array (F64 rounds once). Browser-safe.
// The half-float conversions live in float16.ts; downloading with progress and the Cache API in
// fetch.ts.

import { decodeBf16, decodeF16, floatToHalf } from './float16.ts';

export class SafetensorsError extends Error {
  constructor(
    message: string,
    readonly key?: string,
    readonly offset?: number,
  ) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

export interface Tensor {
  /** The dtype the tensor had in the file (F32, F16, ...); `data` is always float32. */
  dtype: string;
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  tensors: Map<string, Tensor>;
}

export interface ParseOptions {
  /** Tensors for which this returns true are validated but not decoded (e.g. I64 counters). */
  skipTensor?: (name: string, dtype: string, shape: number[]) => boolean;
}

const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, U16: 2, I16: 2, F16: 2, BF16: 2,
  U32: 4, I32: 4, F32: 4, U64: 8, I64: 8, F64: 8,
};
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);
/** Far above any real header (the 307-tensor Mask R-CNN header is ~30 KB); guards garbage input. */
export const MAX_HEADER_BYTES = 100_000_000;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export function parseSafetensors(bytes: Uint8Array, options: ParseOptions = {}): SafetensorsFile {
  if (bytes.length < 8) {
    throw new SafetensorsError(`file is ${bytes.length} bytes, shorter than the 8-byte safetensors header length: the file is truncated or empty`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  if (headerLen > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`declared header length ${headerLen} bytes is absurd (limit ${MAX_HEADER_BYTES}): not a safetensors file`, undefined, 0);
  }
  if (8 + headerLen > bytes.length) {
    throw new SafetensorsError(
      `header length ${headerLen} bytes runs past the end of the file (${bytes.length} bytes, so at most ${bytes.length - 8} for the header): the file is truncated or not a safetensors file`,
      undefined, 0,
    );
  }
  const header = decodeHeader(bytes.subarray(8, 8 + headerLen));
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;

  let metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') metadata = checkMetadata(info);
    else entries.push(checkEntry(name, info, dataLen));
  }

  // Overlap check on entries sorted by start; zero-size tensors may share a position.
  const byStart = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < byStart.length; i++) {
    const prev = byStart[i - 1];
    const cur = byStart[i];
    if (cur.begin < prev.end) {
      throw new SafetensorsError(
        `tensors '${prev.name}' [${prev.begin}, ${prev.end}) and '${cur.name}' [${cur.begin}, ${cur.end}) overlap in the data buffer: the file is corrupt`,
        cur.name, dataStart + cur.begin,
      );
    }
  }

  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    if (options.skipTensor?.(e.name, e.dtype, e.shape)) continue;
    if (!FLOAT_DTYPES.has(e.dtype)) {
      throw new SafetensorsError(
        `tensor '${e.name}' has dtype ${e.dtype}: only float tensors (F32, F16, BF16, F64) are supported; drop it or convert it to float before exporting`,
        e.name, dataStart + e.begin,
      );
    }
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: decodeFloats(bytes, dataStart + e.begin, dataStart + e.end, e.dtype) });
  }
  return { metadata, tensors };
}

function decodeHeader(raw: Uint8Array): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw new SafetensorsError('header is not valid UTF-8: not a safetensors file', undefined, 8);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`header is not valid JSON (${(e as Error).message}): not a safetensors file`, undefined, 8);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new SafetensorsError(`header is JSON but not an object (got ${Array.isArray(parsed) ? 'an array' : typeof parsed}): not a safetensors file`, undefined, 8);
  }
  const dup = findDuplicateKey(text);
  if (dup !== undefined) {
    throw new SafetensorsError(`header declares key '${dup}' more than once: the file is corrupt (a JSON reader would silently keep only the last)`, dup, 8);
  }
  return parsed as Record<string, unknown>;
}

/**
 * JSON.parse keeps the last of duplicate keys silently; this scans the (already valid) JSON text
 * and returns the first key repeated within one object, at any depth.
 */
export function findDuplicateKey(json: string): string | undefined {
  // One entry per open container: the keys seen so far (objects) or null (arrays).
  const stack: Array<Set<string> | null> = [];
  let i = 0;
  while (i < json.length) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top) {
        let k = j + 1;
        while (k < json.length && ' \t\r\n'.includes(json[k])) k++;
        if (json[k] === ':') {
          const key = JSON.parse(json.slice(i, j + 1)) as string;
          if (top.has(key)) return key;
          top.add(key);
        }
      }
      i = j + 1;
      continue;
    }
    if (c === '{') stack.push(new Set());
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
    i++;
  }
  return undefined;
}

/** A short JSON rendering of a header value for a message (a hostile one may nest a million deep). */
function preview(value: unknown): string {
  try {
    return String(JSON.stringify(value)).slice(0, 80);
  } catch {
    return Array.isArray(value) ? 'a deeply nested array' : 'a deeply nested object';
  }
}

function checkMetadata(info: unknown): Record<string, string> {
  if (typeof info !== 'object' || info === null || Array.isArray(info)) {
    throw new SafetensorsError(`'__metadata__' must be an object of string values, got ${preview(info)}`, '__metadata__');
  }
  for (const [k, v] of Object.entries(info)) {
    if (typeof v !== 'string') {
      throw new SafetensorsError(
        `metadata value '${k}' is ${preview(v)}, but safetensors metadata values must be strings (encode numbers and lists as JSON text)`,
        '__metadata__',
      );
    }
  }
  return { ...(info as Record<string, string>) };
}

function checkEntry(name: string, info: unknown, dataLen: number): Entry {
  if (typeof info !== 'object' || info === null || Array.isArray(info)) {
    throw new SafetensorsError(`tensor '${name}': header entry must be an object {dtype, shape, data_offsets}, got ${preview(info)}`, name);
  }
  const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
    throw new SafetensorsError(`tensor '${name}': unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`, name);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(`tensor '${name}': shape ${preview(shape)} is not an array of non-negative integers`, name);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
    throw new SafetensorsError(`tensor '${name}': data_offsets ${preview(offsets)} must be [begin, end] with 0 <= begin <= end`, name);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLen) {
    throw new SafetensorsError(
      `tensor '${name}': data_offsets [${begin}, ${end}] run past the end of the data buffer (${dataLen} bytes): the file is truncated or corrupt`,
      name, begin,
    );
  }
  const expected = byteSize(shape as number[], DTYPE_BYTES[dtype]);
  if (expected !== BigInt(end - begin)) {
    const needs = expected > BYTE_SIZE_CAP ? `more than ${BYTE_SIZE_CAP}` : `${expected}`;
    throw new SafetensorsError(
      `tensor '${name}': shape ${formatShape(shape as number[])} of ${dtype} needs ${needs} bytes, but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      name, begin,
    );
  }
  return { name, dtype, shape: [...(shape as number[])], begin, end };
}

/** Sizes above this are only reported as "more than": no file is that big. */
const BYTE_SIZE_CAP = 2n ** 128n;

/**
 * The bytes a shape needs, in BigInt (a lying shape's product can pass 2^53, where float
 * arithmetic would round), stopping once it passes BYTE_SIZE_CAP: a header can declare
 * millions of dimensions, and their full product would take quadratic time.
 */
function byteSize(shape: number[], elementBytes: number): bigint {
  if (shape.includes(0)) return 0n;
  let size = BigInt(elementBytes);
  for (const d of shape) {
    size *= BigInt(d);
    if (size > BYTE_SIZE_CAP) break;
  }
  return size;
}

/** A shape for a message; a header may declare thousands of dimensions. */
function formatShape(shape: number[]): string {
  return shape.length <= 8 ? `[${shape.join(', ')}]` : `[${shape.slice(0, 4).join(', ')}, ... (${shape.length} dimensions)]`;
}

function decodeFloats(bytes: Uint8Array, begin: number, end: number, dtype: string): Float32Array {
  const count = (end - begin) / DTYPE_BYTES[dtype];
  if (dtype === 'F32' && LITTLE_ENDIAN_HOST) {
    // slice() copies into a fresh, aligned buffer: works for unaligned data and does not alias the file.
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + begin, bytes.byteOffset + end));
  }
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset + begin, end - begin);
  if (dtype === 'F32') for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
  else if (dtype === 'F64') for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, true);
  else if (dtype === 'F16') decodeF16(view, out);
  else decodeBf16(view, out);
  return out;
}

export interface SerializeOptions {
  dtype?: 'F32' | 'F16';
}

export function serializeSafetensors(
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
  options: SerializeOptions = {},
): Uint8Array {
  const dtype = options.dtype ?? 'F32';
  const size = DTYPE_BYTES[dtype];
  const list = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = checkMetadata(metadata);
  let offset = 0;
  for (const [name, t] of list) {
    if (name === '__metadata__' || name === '') throw new SafetensorsError(`cannot store a tensor named '${name}'`, name);
    const numel = t.shape.reduce((a, d) => a * d, 1);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) || numel !== t.data.length) {
      throw new SafetensorsError(`tensor '${name}': shape [${t.shape.join(', ')}] does not match its ${t.data.length} values`, name);
    }
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + numel * size] };
    offset += numel * size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Pad with spaces so the data buffer starts 8-byte aligned (as the reference writer does).
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, padded, true);
  view.setUint32(4, Math.floor(padded / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  let pos = 8 + padded;
  for (const [, t] of list) {
    if (dtype === 'F32') {
      if (LITTLE_ENDIAN_HOST) out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
      else for (let i = 0; i < t.data.length; i++) view.setFloat32(pos + 4 * i, t.data[i], true);
    } else {
      for (let i = 0; i < t.data.length; i++) view.setUint16(pos + 2 * i, floatToHalf(t.data[i]), true);
    }
    pos += t.data.length * size;
  }
  return out;
}
