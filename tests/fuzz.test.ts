// Seeded fuzzing of the weights reader (weights-loader/safetensors.ts) and the Mask R-CNN loader
// (weights-loader/maskrcnn.ts). Every malformed input must give a typed error (SafetensorsError
// for the file format, WeightsError for the model) whose message names the problem, in bounded
// time and without allocating what a lying header declares. Cases: random bytes, random
// single-fault mutations of valid files (overlap, out of range, size mismatch, huge shapes, bad
// dtypes, duplicate keys, header length, truncation), every truncation point and every header
// byte of a small file, non-finite values, and pruned files whose producer and consumer
// channel counts disagree. No GPU.

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadMaskRCNNWeights, maskrcnnParseOptions, WeightsError } from '../weights-loader/maskrcnn.ts';
import { floatToHalf } from '../weights-loader/float16.ts';
import { parseSafetensors, SafetensorsError, serializeSafetensors, type Tensor } from '../weights-loader/safetensors.ts';
import { rng } from './random.ts';
import { syntheticStateDict } from './synthetic-model.ts';
import { rawFile } from './raw-safetensors.ts';

/** A hang guard, not a speed test: each case takes under a millisecond (the deepest header 0.5 s). */
const HANG_MS = 10_000;
/** What a rejected file may leave allocated: far below the gigabytes its header declares. */
const MAX_GROWTH_BYTES = 64 * 2 ** 20;

/** Every SafetensorsError message family; a fuzzed file's error must be one of them. */
const FORMAT_ERRORS: Record<string, RegExp> = {
  short: /^file is \d+ bytes, shorter than the 8-byte safetensors header length/,
  absurd: /^declared header length \d+ bytes is absurd/,
  headerPastEnd: /^header length \d+ bytes runs past the end of the file \(\d+ bytes/,
  utf8: /^header is not valid UTF-8/,
  json: /^header is not valid JSON/,
  notObject: /^header is JSON but not an object/,
  duplicate: /^header declares key '.*' more than once/,
  metadata: /^'__metadata__' must be an object|^metadata value '.*' is .*must be strings/,
  entry: /^tensor '.*': header entry must be an object/,
  dtype: /^tensor '.*': unknown dtype/,
  shape: /^tensor '.*': shape .* is not an array of non-negative integers/,
  offsets: /^tensor '.*': data_offsets .* must be \[begin, end\]/,
  outOfRange: /^tensor '.*': data_offsets \[\d+, \d+\] run past the end of the data buffer \(\d+ bytes\)/,
  size: /^tensor '.*': shape \[.*\] of \w+ needs (more than )?\d+ bytes, but data_offsets \[\d+, \d+\] hold \d+$/s,
  overlap: /^tensors '.*' \[\d+, \d+\) and '.*' \[\d+, \d+\) overlap in the data buffer/s,
  notFloat: /^tensor '.*' has dtype \w+: only float tensors/,
};

function errorKind(e: SafetensorsError): string {
  const kind = Object.keys(FORMAT_ERRORS).find((k) => FORMAT_ERRORS[k].test(e.message));
  if (!kind) throw new Error(`SafetensorsError with an unrecognised message: ${e.message}`);
  return kind;
}

/** Runs `fn`; returns the error (which must be a `type`) or undefined; fails on a hang. */
function attempt<E extends Error>(fn: () => unknown, type: new (...a: never[]) => E, what: string): E | undefined {
  const start = performance.now();
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof type)) throw new Error(`${what}: expected a ${type.name} or success, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    return e;
  } finally {
    const ms = performance.now() - start;
    if (ms > HANG_MS) throw new Error(`${what}: took ${ms.toFixed(0)} ms`);
  }
}

function rejects<E extends Error>(fn: () => unknown, type: new (...a: never[]) => E, patterns: RegExp[], what: string): E {
  const e = attempt(fn, type, what);
  if (!e) throw new Error(`${what}: accepted, expected a ${type.name}`);
  for (const p of patterns) assert.match(e.message, p, `${what}: ${e.message}`);
  return e;
}

/** A parsed file must be self-consistent: each tensor holds product(shape) floats. */
function checkParsed(bytes: Uint8Array, what: string): void {
  const file = parseSafetensors(bytes);
  for (const [name, t] of file.tensors) {
    const n = t.shape.reduce((a, d) => a * d, 1);
    if (t.data.length !== n) throw new Error(`${what}: '${name}' parsed with ${t.data.length} values for shape [${t.shape}]`);
  }
}


interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

const FLOAT_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

/** A valid random file: 2-6 float tensors of random dtypes and shapes (some empty), laid out in a random order. */
function randomValidFile(r: () => number): { entries: Record<string, Entry>; dataLen: number } {
  const n = 2 + Math.floor(r() * 5);
  const names = Array.from({ length: n }, (_, i) => `t${i}.${['weight', 'bias', 'x'][Math.floor(r() * 3)]}`);
  const order = [...names].sort(() => r() - 0.5);
  const entries: Record<string, Entry> = {};
  let at = 0;
  for (const name of order) {
    const dtype = Object.keys(FLOAT_BYTES)[Math.floor(r() * 4)];
    // The first two tensors are never empty, so every mutation below has something to move.
    const nonEmpty = order.indexOf(name) < 2;
    const rank = Math.floor(r() * 3) + (nonEmpty ? 1 : 0);
    const shape = Array.from({ length: rank }, () => Math.floor(r() * 5) + (nonEmpty ? 1 : 0));
    const size = shape.reduce((a, d) => a * d, 1) * FLOAT_BYTES[dtype];
    entries[name] = { dtype, shape, data_offsets: [at, at + size] };
    at += size;
  }
  return { entries, dataLen: at };
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

const format = suite('safetensors fuzz');

format('3000 random byte strings: each parses consistently or throws a SafetensorsError of a known kind', () => {
  const r = rng(801);
  const kinds = new Map<string, number>();
  let parsed = 0;
  for (let i = 0; i < 3000; i++) {
    const len = Math.floor(r() * 160);
    const bytes = new Uint8Array(len).map(() => Math.floor(r() * 256));
    // Two thirds get a plausible header length, so the fuzz reaches the JSON and entry checks.
    if (len >= 8 && i % 3) {
      new DataView(bytes.buffer).setBigUint64(0, BigInt(Math.floor(r() * (len + 20))), true);
      if (i % 3 === 2 && len > 10) bytes.set(new TextEncoder().encode('{"').subarray(0, len - 8), 8);
    }
    const e = attempt(() => checkParsed(bytes, `random ${i}`), SafetensorsError, `random bytes #${i}`);
    if (!e) parsed++;
    else kinds.set(errorKind(e), (kinds.get(errorKind(e)) ?? 0) + 1);
  }
  console.log(`    kinds: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}; parsed ${parsed}`);
  for (const k of ['short', 'absurd', 'headerPastEnd', 'json']) assert.ok(kinds.has(k), `random bytes reach the '${k}' check`);
});

format('every truncation point of a small valid file names the part that is missing', () => {
  const { entries, dataLen } = randomValidFile(rng(5));
  const bytes = rawFile(entries, new Uint8Array(dataLen).map((_, i) => i * 7));
  const headerEnd = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
  checkParsed(bytes, 'the untruncated file');
  for (let cut = 0; cut < bytes.length; cut++) {
    const want = cut < 8 ? FORMAT_ERRORS.short : cut < headerEnd ? FORMAT_ERRORS.headerPastEnd : FORMAT_ERRORS.outOfRange;
    rejects(() => parseSafetensors(bytes.subarray(0, cut)), SafetensorsError, [want, cut >= headerEnd ? /truncated or corrupt/ : /./], `cut at ${cut} of ${bytes.length}`);
  }
});

format('every byte of a small header set to 16 random values: consistent parse or a known SafetensorsError', () => {
  const r = rng(17);
  const { entries, dataLen } = randomValidFile(rng(6));
  const bytes = rawFile(entries, dataLen);
  const headerEnd = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const kinds = new Set<string>();
  for (let at = 0; at < headerEnd; at++) {
    for (let k = 0; k < 16; k++) {
      const mutated = bytes.slice();
      mutated[at] = Math.floor(r() * 256);
      const e = attempt(() => checkParsed(mutated, `byte ${at}`), SafetensorsError, `byte ${at} set to ${mutated[at]}`);
      if (e) kinds.add(errorKind(e));
    }
  }
  console.log(`    ${headerEnd} header bytes x 16 values; error kinds: ${[...kinds].join(', ')}`);
  for (const k of ['absurd', 'headerPastEnd', 'json', 'dtype', 'size']) assert.ok(kinds.has(k), `byte mutations reach '${k}'`);
});

/** One fault per case, each with the error it must produce. */
const MUTATIONS: Array<[string, (f: { entries: Record<string, Entry>; dataLen: number }, r: () => number) => { bytes: Uint8Array; want: RegExp[] }]> = [
  ['overlapping offsets', (f, r) => {
    const names = Object.keys(f.entries).filter((n) => f.entries[n].data_offsets[1] > f.entries[n].data_offsets[0]);
    const [a, b] = [...names].sort(() => r() - 0.5);
    const ea = f.entries[a];
    const size = f.entries[b].data_offsets[1] - f.entries[b].data_offsets[0];
    const begin = ea.data_offsets[0] + Math.floor(r() * (ea.data_offsets[1] - ea.data_offsets[0]));
    f.entries[b].data_offsets = [begin, begin + size];
    return { bytes: rawFile(f.entries, Math.max(f.dataLen, begin + size)), want: [FORMAT_ERRORS.overlap] };
  }],
  ['offsets out of range', (f, r) => {
    const name = pick(r, Object.keys(f.entries));
    const e = f.entries[name];
    const shift = f.dataLen - e.data_offsets[0] + 1 + Math.floor(r() * 1e6);
    e.data_offsets = [e.data_offsets[0] + shift, e.data_offsets[1] + shift];
    return { bytes: rawFile(f.entries, f.dataLen), want: [FORMAT_ERRORS.outOfRange, new RegExp(`^tensor '${name.replace('.', '\\.')}'`)] };
  }],
  ['offsets reversed, negative or not integers', (f, r) => {
    const name = pick(r, Object.keys(f.entries));
    (f.entries[name] as { data_offsets: unknown }).data_offsets = pick(r, [[9, 1], [-4, 0], [0.5, 2], [0], [0, 1, 2], '0-8', null, [0, 2 ** 60]]);
    return { bytes: rawFile(f.entries, f.dataLen), want: [FORMAT_ERRORS.offsets] };
  }],
  ['shape disagrees with the byte range', (f, r) => {
    const name = pick(r, Object.keys(f.entries).filter((n) => f.entries[n].shape.length > 0));
    const e = f.entries[name];
    e.shape = e.shape.map((d, i) => (i === 0 ? d + 1 + Math.floor(r() * 3) : d));
    if (e.shape.includes(0)) e.shape = e.shape.map((d) => d || 1);
    return { bytes: rawFile(f.entries, f.dataLen), want: [FORMAT_ERRORS.size] };
  }],
  ['huge declared shape (no allocation)', (f, r) => {
    const name = pick(r, Object.keys(f.entries));
    const e = f.entries[name];
    e.shape = pick(r, [[2 ** 53 - 1], [1e15, 1e15], Array(1000).fill(2 ** 40), [65536, 65536, 65536, 65536]]);
    e.data_offsets = [0, pick(r, [4, 2 ** 40, Number.MAX_SAFE_INTEGER])];
    const want = e.data_offsets[1] > f.dataLen ? FORMAT_ERRORS.outOfRange : FORMAT_ERRORS.size;
    return { bytes: rawFile(f.entries, f.dataLen), want: [want] };
  }],
  ['unknown dtype', (f, r) => {
    const name = pick(r, Object.keys(f.entries));
    (f.entries[name] as { dtype: unknown }).dtype = pick(r, ['F17', 'float32', 'f32', '', 7, null, ['F32']]);
    return { bytes: rawFile(f.entries, f.dataLen), want: [FORMAT_ERRORS.dtype] };
  }],
  ['integer dtype of the right size', (f, r) => {
    const name = pick(r, Object.keys(f.entries).filter((n) => f.entries[n].dtype === 'F32' || f.entries[n].dtype === 'F16'));
    if (!name) return { bytes: rawFile({ x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, 8), want: [FORMAT_ERRORS.notFloat] };
    const e = f.entries[name];
    e.dtype = e.dtype === 'F32' ? pick(r, ['I32', 'U32']) : pick(r, ['I16', 'U16']);
    return { bytes: rawFile(f.entries, f.dataLen), want: [FORMAT_ERRORS.notFloat, new RegExp(`'${name.replace('.', '\\.')}' has dtype ${e.dtype}`)] };
  }],
  ['bad shape values', (f, r) => {
    const name = pick(r, Object.keys(f.entries));
    (f.entries[name] as { shape: unknown }).shape = pick(r, [[-1], [1.5], ['2'], null, 3, [2 ** 53]]);
    return { bytes: rawFile(f.entries, f.dataLen), want: [FORMAT_ERRORS.shape] };
  }],
  ['duplicate key (top level or inside an entry)', (f, r) => {
    const names = Object.keys(f.entries);
    const name = pick(r, names);
    const text = JSON.stringify(f.entries);
    const inner = r() < 0.5;
    const header = inner
      ? text.replace(`"${name}":{"dtype"`, `"${name}":{"dtype":"F64","dtype"`)
      : `{${text.slice(1, -1)},${JSON.stringify(name)}:${JSON.stringify(f.entries[name])}}`;
    return { bytes: rawFile(header, f.dataLen), want: [FORMAT_ERRORS.duplicate, new RegExp(`key '${inner ? 'dtype' : name.replace('.', '\\.')}'`)] };
  }],
  ['header length past the end of the file', (f, r) => {
    const json = JSON.stringify(f.entries);
    const bytes = rawFile(json, f.dataLen, json.length + f.dataLen + 1 + Math.floor(r() * 1000));
    return { bytes, want: [FORMAT_ERRORS.headerPastEnd] };
  }],
  ['metadata that is not a string map', (f, r) => {
    const md = pick(r, [[1, 2], 'x', { a: 1 }, { a: ['b'] }, null]);
    return { bytes: rawFile({ __metadata__: md, ...f.entries }, f.dataLen), want: [FORMAT_ERRORS.metadata] };
  }],
  ['header nested a million deep', (f) => {
    const name = Object.keys(f.entries)[0];
    const text = JSON.stringify(f.entries).replace(`"${name}":{`, `"${name}":${'['.repeat(1e6)}${']'.repeat(1e6)},"${name}_":{`);
    return { bytes: rawFile(text, f.dataLen), want: [FORMAT_ERRORS.entry, /deeply nested array/] };
  }],
];

format('single-fault mutations of random valid files: the specific error for each fault', () => {
  const r = rng(99);
  for (const [name, mutate] of MUTATIONS) {
    const cases = name.includes('million') ? 2 : 40;
    for (let i = 0; i < cases; i++) {
      const valid = randomValidFile(r);
      checkParsed(rawFile(valid.entries, valid.dataLen), `${name} #${i} before the fault`);
      const { bytes, want } = mutate(valid, r);
      const before = process.memoryUsage().arrayBuffers;
      const e = rejects(() => parseSafetensors(bytes), SafetensorsError, want, `${name} #${i}`);
      assert.ok(e.message.length < 400, `${name}: a bounded message (${e.message.length} chars)`);
      const grown = process.memoryUsage().arrayBuffers - before;
      assert.ok(grown < MAX_GROWTH_BYTES, `${name} #${i}: ${grown} bytes allocated while rejecting`);
    }
  }
});

format('a header declaring 200000 dimensions of 2^52 fails at once, with a short message', () => {
  const header = { w: { dtype: 'F32', shape: Array(200000).fill(2 ** 52), data_offsets: [0, 4] } };
  const e = rejects(() => parseSafetensors(rawFile(header, 4)), SafetensorsError, [/needs more than 340282366920938463463374607431768211456 bytes/, /\(200000 dimensions\)/], 'long shape');
  assert.ok(e.message.length < 300);
});

format.run();

// ---------- the Mask R-CNN loader on a narrow synthetic model ----------

const NARROW = { widthDiv: 16 };
const load = (tensors: Map<string, Tensor>, metadata: Record<string, string> = {}) => loadMaskRCNNWeights({ metadata, tensors });
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const model = suite('mask rcnn loader fuzz');

model('NaN/Inf anywhere: the tensor named with the count of non-finite values', () => {
  const r = rng(3);
  const keys = [...syntheticStateDict(NARROW).keys()];
  for (let i = 0; i < 30; i++) {
    const sd = syntheticStateDict(NARROW);
    const key = pick(r, keys);
    const t = sd.get(key)!;
    const positions = new Set(Array.from({ length: 1 + Math.floor(r() * Math.min(8, t.data.length)) }, () => Math.floor(r() * t.data.length)));
    for (const p of positions) t.data[p] = pick(r, [NaN, Infinity, -Infinity]);
    const first = Math.min(...positions);
    const n = positions.size;
    const e = rejects(() => load(sd), WeightsError, [
      new RegExp(`^tensor '${escape(key)}' \\(.*\\) holds ${n} non-finite values? of ${t.data.length} \\(the first, (NaN|-?Infinity) at index ${first}\\)`),
      /corrupt/, /re-export/,
    ], `${n} non-finite in ${key}`);
    assert.is(e.key, key);
  }
});

model('weights past the F16 range become Inf when saved as F16, and the load says so', () => {
  const sd = syntheticStateDict(NARROW);
  const key = 'roi_heads.box_head.fc7.weight';
  const t = sd.get(key)!;
  for (let i = 0; i < 5; i++) t.data[i * 11] = 70000 * (i % 2 ? -1 : 1);
  assert.is(floatToHalf(70000), 0x7c00);
  const file = parseSafetensors(serializeSafetensors(sd, undefined, { dtype: 'F16' }), maskrcnnParseOptions);
  rejects(() => loadMaskRCNNWeights(file), WeightsError, [new RegExp(`'${escape(key)}' .* holds 5 non-finite values of ${t.data.length} \\(the first, Infinity at index 0\\)`), /F16/], 'F16 overflow');
});

/** Layers whose output channels feed another layer: [weight key, output dim, keys of length cout]. */
function producers(sd: Map<string, Tensor>): Array<[string, number, string[]]> {
  const out: Array<[string, number, string[]]> = [];
  for (const [key, t] of sd) {
    if (!key.endsWith('.weight') || t.shape.length < 2) continue;
    const prefix = key.slice(0, -'.weight'.length);
    const dim = key.includes('conv5_mask') ? 1 : 0;
    const bn = prefix.replace(/conv(\d)$/, 'bn$1').replace(/downsample\.0$/, 'downsample.1');
    const companions = bn !== prefix ? ['weight', 'bias', 'running_mean', 'running_var'].map((s) => `${bn}.${s}`) : [`${prefix}.bias`];
    out.push([key, dim, companions]);
  }
  return out;
}

function narrow(sd: Map<string, Tensor>, key: string, dim: number, by = 1): void {
  const t = sd.get(key)!;
  const shape = [...t.shape];
  shape[dim] -= by;
  const inner = t.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
  const outer = t.shape.slice(0, dim).reduce((a, b) => a * b, 1);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let o = 0; o < outer; o++) data.set(t.data.subarray(o * t.shape[dim] * inner, (o * t.shape[dim] + shape[dim]) * inner), o * shape[dim] * inner);
  sd.set(key, { dtype: t.dtype, shape, data });
}

model('a pruned file that narrows any one layer but not its consumer is refused, naming both sides', () => {
  const base = syntheticStateDict(NARROW);
  const list = producers(base);
  assert.ok(list.length > 70, `${list.length} conv/linear layers`);
  for (const [key, dim, companions] of list) {
    const sd = syntheticStateDict(NARROW);
    narrow(sd, key, dim);
    for (const c of companions) narrow(sd, c, 0);
    const e = rejects(() => load(sd), WeightsError, [], `narrowed ${key}`);
    // The consumer that no longer matches is named, with both channel counts.
    assert.match(
      e.message,
      /takes \d+ input (channels|features) but .* (outputs|gives) \d+|outputs \d+ channels but the residual|must have the same width|expected 4 x \d+|has \d+ classes but|names \d+ classes/,
      `${key}: ${e.message}`,
    );
    assert.ok(e.key && e.message.includes(`'${e.key}'`), `${key}: the error names its key: ${e.message}`);
  }
  // Narrowing the consumer too is a valid pruned file.
  const sd = syntheticStateDict(NARROW);
  narrow(sd, 'backbone.body.layer2.1.conv1.weight', 0, 3);
  for (const s of ['weight', 'bias', 'running_mean', 'running_var']) narrow(sd, `backbone.body.layer2.1.bn1.${s}`, 0, 3);
  narrow(sd, 'backbone.body.layer2.1.conv2.weight', 1, 3);
  assert.is(load(sd).layers[1][1].conv2.cin, 128 / 16 - 3);
});

model('random faults in a model file: missing tensors, perturbed shapes, integer dtypes, foreign keys', () => {
  const r = rng(12);
  const keys = [...syntheticStateDict(NARROW).keys()];
  const counts = { missing: 0, shape: 0, dtype: 0, foreign: 0 };
  for (let i = 0; i < 60; i++) {
    const sd = syntheticStateDict(NARROW);
    const key = pick(r, keys);
    const kind = (['missing', 'shape', 'dtype', 'foreign'] as const)[i % 4];
    counts[kind]++;
    if (kind === 'missing') {
      sd.delete(key);
      rejects(() => load(sd), WeightsError, [new RegExp(`missing tensor '${escape(key)}', needed by`), /export_torchvision/], `without ${key}`);
    } else if (kind === 'shape') {
      const t = sd.get(key)!;
      const shape = r() < 0.3 ? [...t.shape, 1] : t.shape.map((d, j) => (j === t.shape.length - 1 ? d + 2 : d));
      sd.set(key, { dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
      const e = rejects(() => load(sd), WeightsError, [], `${key} reshaped to [${shape}]`);
      assert.match(e.message, /has shape \[.*\], expected \[|takes \d+ input|outputs \d+|must have the same width|expected 4 x|classes but|gives \d+/, e.message);
    } else if (kind === 'dtype') {
      const bytes = serializeSafetensors(sd);
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
      const dtype = pick(r, ['I32', 'U32']);
      header[key].dtype = dtype;
      rejects(() => parseSafetensors(rawFile(header, bytes.subarray(8 + n)), maskrcnnParseOptions), SafetensorsError, [new RegExp(`'${escape(key)}' has dtype ${dtype}: only float tensors`)], `${key} as ${dtype}`);
    } else {
      const extra = pick(r, ['fc.weight', 'backbone.body.layer5.0.conv1.weight', 'roi_heads.box_head.0.0.weight', `${key}.extra`]);
      sd.set(extra, { dtype: 'F32', shape: [2], data: new Float32Array(2) });
      rejects(() => load(sd), WeightsError, [/1 unexpected tensor for maskrcnn_resnet50_fpn \(v1\)/, new RegExp(`'${escape(extra)}'`)], `extra ${extra}`);
    }
  }
  assert.equal(Object.values(counts), [15, 15, 15, 15]);
});

model('the same weights stored as F64 load to the same float32 values', () => {
  const sd = syntheticStateDict(NARROW);
  const f32 = serializeSafetensors(sd);
  const n = Number(new DataView(f32.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(f32.subarray(8, 8 + n)));
  // Re-encode every tensor as F64 (exact) and check the loader sees the same values.
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const key of Object.keys(header).sort()) {
    const t = sd.get(key)!;
    const bytes = new Uint8Array(Float64Array.from(t.data).buffer);
    header[key] = { dtype: 'F64', shape: t.shape, data_offsets: [at, at + bytes.length] };
    parts.push(bytes);
    at += bytes.length;
  }
  const body = new Uint8Array(at);
  let o = 0;
  for (const p of parts) (body.set(p, o), (o += p.length));
  const w64 = loadMaskRCNNWeights(parseSafetensors(rawFile(header, body), maskrcnnParseOptions));
  const w32 = loadMaskRCNNWeights(parseSafetensors(f32, maskrcnnParseOptions));
  assert.equal(w64.boxHead.fc6.weight, w32.boxHead.fc6.weight);
  assert.equal(w64.stem.weight, w32.stem.weight);
});

model.run();
