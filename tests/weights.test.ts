// The weights loader without a GPU: safetensors round trips (F32, F16 rounding, subnormals, inf),
// exact F16/BF16 decoding, every malformed-file error, streamed download progress, atomic writes,
// and the Mask R-CNN mapping on a seeded narrow model: shapes -> channel counts, legacy names, BN
// folding against a float64 conv-then-BN reference, and each model error naming its key.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  canonicalizeKeys, COCO_CLASSES, foldFrozenBatchNorm, loadMaskRCNNWeights, maskrcnnParseOptions, maskrcnnV1KeyNames, WeightsError,
  type MaskRCNNWeights,
} from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile, writeFileAtomic } from '../weights-loader/node.ts';
import { fetchSafetensors } from '../weights-loader/fetch.ts';
import { floatToHalf, halfToFloat } from '../weights-loader/float16.ts';
import { parseSafetensors, SafetensorsError, serializeSafetensors, type Tensor } from '../weights-loader/safetensors.ts';
import { normal, rng, uniform } from './random.ts';
import { conv2dRef } from './reference/conv2d.ts';
import { convThenBatchNormRef } from './reference/batchnorm.ts';
import { maskrcnnV1Shapes, syntheticMaskRCNNFile, syntheticStateDict, toLegacyNames } from './synthetic-model.ts';
import { assertClose, compare, exact, type Tolerance } from './tolerance.ts';
import { rawFile } from './raw-safetensors.ts';

/** Folding reorders one float32 rounding; compared to float64 conv-then-BN. */
const bnFold: Tolerance = { name: 'bnFold', abs: 1e-6, rel: 1e-5 };

function throwsWith<E extends Error>(fn: () => unknown, type: new (...a: never[]) => E, patterns: RegExp[]): E {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof type)) throw new Error(`expected a ${type.name}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

async function rejectsWith(p: Promise<unknown>, patterns: RegExp[], type: new (...a: never[]) => Error = Error): Promise<Error> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof type)) throw new Error(`expected a rejection with ${type.name}, got ${String(caught)}`);
  for (const re of patterns) assert.match(caught.message, re);
  return caught;
}


const t = (shape: number[], values: ArrayLike<number>): Tensor => ({ dtype: 'F32', shape, data: Float32Array.from(values) });

const io = suite('safetensors');

io('F32 round trip: sorted contiguous layout, padded header, metadata, special values, unaligned reads', () => {
  const special = [0, -0, 1.5, -3.25e-7, 1e-45, -1.17549435e-38, 3.4028234663852886e38, Infinity, -Infinity, NaN];
  const tensors = { 'b.weight': t([2, 5], special), 'a.bias': t([3], [1, 2, 3]), scalar: t([], [42]), empty: t([0, 4], []) };
  const bytes = serializeSafetensors(tensors, { format: 'pt', note: 'ü' });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.is(n % 8, 0, 'header padded to 8 bytes');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assert.equal(header['a.bias'].data_offsets, [0, 12]);
  assert.equal(header['b.weight'].data_offsets, [12, 52]);
  assert.equal(header['empty'].data_offsets, [52, 52]);
  assert.equal(header['scalar'].data_offsets, [52, 56]);
  const file = parseSafetensors(bytes);
  assert.equal(file.metadata, { format: 'pt', note: 'ü' });
  assert.equal([...file.tensors.keys()], ['a.bias', 'b.weight', 'empty', 'scalar']);
  assert.equal(file.tensors.get('scalar')?.shape, []);
  assert.equal(Array.from(file.tensors.get('b.weight')!.data), special.map((x) => Math.fround(x)));
  assert.ok(Object.is(file.tensors.get('b.weight')!.data[1], -0));
  // The same data after a 3-byte header: every float is misaligned in the file.
  const oddHeader = JSON.stringify({ x: { dtype: 'F32', shape: [10], data_offsets: [0, 40] } });
  const odd = rawFile(oddHeader.padEnd(Math.ceil(oddHeader.length / 4) * 4 + 3), new Uint8Array(Float32Array.from(special).buffer));
  assert.is((8 + Number(new DataView(odd.buffer).getBigUint64(0, true))) % 4, 3);
  const unaligned = parseSafetensors(odd.subarray(0)).tensors.get('x')!.data;
  assert.equal(Array.from(unaligned), special.map((x) => Math.fround(x)));
  // A view into a bigger buffer, at an odd offset, parses too.
  const shifted = new Uint8Array(bytes.length + 3);
  shifted.set(bytes, 3);
  assert.equal(Array.from(parseSafetensors(shifted.subarray(3)).tensors.get('a.bias')!.data), [1, 2, 3]);
});

/** Nearest half by search over all finite halves, ties to even: the definition floatToHalf must meet. */
const positiveHalves = Array.from({ length: 0x7c01 }, (_, h) => (h === 0x7c00 ? 65536 : halfToFloat(h)));
function nearestHalfRef(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  let lo = 0;
  let hi = 0x7c00;
  if (a >= 65536) return sign | 0x7c00;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (positiveHalves[mid] <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - positiveHalves[lo];
  const dHi = positiveHalves[hi] - a;
  return sign | (dLo < dHi || (dLo === dHi && (lo & 1) === 0) ? lo : hi);
}

io('F16: exact decoding of all 65536 patterns, round-to-nearest-even encoding, F16 round trip', () => {
  for (let h = 0; h < 65536; h++) {
    const e = (h >> 10) & 31;
    const m = h & 1023;
    const s = h & 0x8000 ? -1 : 1;
    const want = e === 31 ? (m ? NaN : s * Infinity) : e === 0 ? s * m * Math.pow(2, -24) : s * (1 + m / 1024) * Math.pow(2, e - 15);
    const got = halfToFloat(h);
    if (!(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)))) throw new Error(`half 0x${h.toString(16)}: got ${got}, want ${want}`);
    if (e !== 31 && floatToHalf(got) !== h) throw new Error(`half 0x${h.toString(16)} does not round-trip`);
  }
  const r = rng(7);
  const cases = [65504, 65519.99, 65520, 65536, 1e9, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0000001, 3 * 2 ** -26, 2 ** -26, 1e-30, 2049, 2051, 0.1, -0.1, -0];
  for (let i = 0; i < 20000; i++) cases.push(Math.fround((r() < 0.5 ? -1 : 1) * Math.pow(2, -30 + 47 * r())));
  // Exact midpoints between neighbouring halves (ties) and one float32 ulp either side.
  for (let i = 0; i < 3000; i++) {
    const h = Math.floor(r() * 0x7bff);
    const mid = (halfToFloat(h) + halfToFloat(h + 1)) / 2;
    cases.push(mid, Math.fround(mid * (1 + 2 ** -23)), Math.fround(mid * (1 - 2 ** -23)), -mid);
  }
  for (const x of cases) {
    const got = floatToHalf(x);
    const want = nearestHalfRef(Math.fround(x));
    if (got !== want) throw new Error(`floatToHalf(${x}) = 0x${got.toString(16)}, want 0x${want.toString(16)}`);
  }
  const values = [0.1, 1 / 3, 65519, 65520, 7e-8, 3e-8, 2e-8, 6.1e-5, -Infinity, NaN, 1e-9, -2.5];
  const file = parseSafetensors(serializeSafetensors({ v: t([values.length], values) }, undefined, { dtype: 'F16' }));
  const v = file.tensors.get('v')!;
  assert.is(v.dtype, 'F16');
  assert.equal(Array.from(v.data), values.map((x) => halfToFloat(floatToHalf(x))));
  assert.equal(Array.from(v.data.slice(2, 8)), [65504, Infinity, 5.960464477539063e-8, 5.960464477539063e-8, 0, 6.097555160522461e-5]);
});

io('BF16 and F64 decoding', () => {
  const bf = [0x3f80, 0xc000, 0x3fc0, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x8080, 0x0000, 0x8000, 0x4049];
  const want = [1, -2, 1.5, Infinity, -Infinity, NaN, 2 ** -133, -(2 ** -126), 0, -0, 3.140625];
  const raw = new Uint8Array(bf.length * 2);
  bf.forEach((b, i) => new DataView(raw.buffer).setUint16(2 * i, b, true));
  const f64 = [Math.PI, 1e300, -1e-300, 1 + 2 ** -40];
  const raw64 = new Uint8Array(Float64Array.from(f64).buffer);
  const body = new Uint8Array(raw.length + raw64.length);
  body.set(raw64);
  body.set(raw, raw64.length);
  const file = parseSafetensors(
    rawFile({ d: { dtype: 'F64', shape: [4], data_offsets: [0, 32] }, b: { dtype: 'BF16', shape: [11], data_offsets: [32, 54] } }, body),
  );
  const got = Array.from(file.tensors.get('b')!.data);
  want.forEach((w, i) => assert.ok(Object.is(got[i], w), `bf16 0x${bf[i].toString(16)}: ${got[i]} vs ${w}`));
  assert.equal(Array.from(file.tensors.get('d')!.data), [Math.fround(Math.PI), Infinity, -0, 1]);
});

const one = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };

io('malformed files: truncation, header length, not safetensors, bad JSON', () => {
  const good = serializeSafetensors({ w: t([4], [1, 2, 3, 4]) });
  throwsWith(() => parseSafetensors(new Uint8Array(0)), SafetensorsError, [/0 bytes, shorter than the 8-byte/]);
  throwsWith(() => parseSafetensors(good.subarray(0, 5)), SafetensorsError, [/5 bytes, shorter than the 8-byte/]);
  const n = Number(new DataView(good.buffer).getBigUint64(0, true));
  throwsWith(() => parseSafetensors(good.subarray(0, 8 + 10)), SafetensorsError, [new RegExp(`header length ${n} bytes runs past the end of the file \\(18 bytes`)]);
  throwsWith(() => parseSafetensors(good.subarray(0, good.length - 3)), SafetensorsError, [/'w'/, /data_offsets \[0, 16\]/, /data buffer \(13 bytes\)/, /truncated/]);
  throwsWith(() => parseSafetensors(rawFile('{}', 0, 1000)), SafetensorsError, [/header length 1000 bytes runs past the end of the file \(10 bytes/]);
  const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
  throwsWith(() => parseSafetensors(png), SafetensorsError, [/not a safetensors file/, /absurd/]);
  throwsWith(() => parseSafetensors(rawFile('{"a": 1,')), SafetensorsError, [/not valid JSON/, /not a safetensors file/]);
  throwsWith(() => parseSafetensors(rawFile('[1, 2]')), SafetensorsError, [/not an object \(got an array\)/, /not a safetensors file/]);
  throwsWith(() => parseSafetensors(rawFile('"text"')), SafetensorsError, [/not an object \(got string\)/]);
  const badUtf8 = rawFile('""');
  badUtf8[9] = 0xc3;
  throwsWith(() => parseSafetensors(badUtf8), SafetensorsError, [/not valid UTF-8/]);
});

io('malformed tensor entries: dtype, shape, offsets, sizes, overlaps, duplicates, metadata', () => {
  throwsWith(() => parseSafetensors(rawFile({ w: { ...one, dtype: 'F17' } }, 8)), SafetensorsError, [/'w'/, /unknown dtype "F17"/]);
  const err = throwsWith(() => parseSafetensors(rawFile({ counter: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, 8)), SafetensorsError, [/'counter'/, /I64/, /only float tensors/]);
  assert.is(err.key, 'counter');
  for (const shape of [[-1], [1.5], '2', [2, null]]) {
    throwsWith(() => parseSafetensors(rawFile({ w: { ...one, shape } }, 8)), SafetensorsError, [/'w'/, /not an array of non-negative integers/]);
  }
  for (const data_offsets of [[8, 0], [0], [0, '8'], [-1, 7], null]) {
    throwsWith(() => parseSafetensors(rawFile({ w: { ...one, data_offsets } }, 8)), SafetensorsError, [/'w'/, /data_offsets .* must be \[begin, end\]/]);
  }
  throwsWith(() => parseSafetensors(rawFile({ w: { ...one, data_offsets: [4, 12] } }, 8)), SafetensorsError, [/'w'/, /\[4, 12\]/, /data buffer \(8 bytes\)/]);
  throwsWith(() => parseSafetensors(rawFile({ w: { ...one, shape: [3] } }, 8)), SafetensorsError, [/'w'/, /needs 12 bytes/, /hold 8/]);
  throwsWith(
    () => parseSafetensors(rawFile({ a: one, b: { ...one, data_offsets: [4, 12] } }, 12)),
    SafetensorsError,
    [/'a' \[0, 8\) and 'b' \[4, 12\) overlap/],
  );
  throwsWith(() => parseSafetensors(rawFile(`{"a": ${JSON.stringify(one)}, "b": ${JSON.stringify(one)}, "a": ${JSON.stringify(one)}}`, 8)), SafetensorsError, [
    /key 'a' more than once/,
  ]);
  throwsWith(() => parseSafetensors(rawFile(`{"a": {"dtype": "F32", "shape": [2], "shape": [1, 2], "data_offsets": [0, 8]}}`, 8)), SafetensorsError, [/'shape' more than once/]);
  // Keys that differ only by an escape are distinct; escaped quotes inside keys do not confuse the scan.
  const tricky = parseSafetensors(rawFile(`{"a\\"b": ${JSON.stringify(one)}, "a\\\\b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}`, 16));
  assert.equal([...tricky.tensors.keys()], ['a"b', 'a\\b']);
  throwsWith(() => parseSafetensors(rawFile({ __metadata__: { classes: ['a'] } })), SafetensorsError, [/metadata value 'classes'/, /must be strings/]);
  throwsWith(() => parseSafetensors(rawFile({ __metadata__: 'x' })), SafetensorsError, [/'__metadata__' must be an object/]);
  throwsWith(() => parseSafetensors(rawFile({ w: [1, 2] }, 0)), SafetensorsError, [/'w'/, /must be an object/]);
});

io('a lying header (1e15 elements in a 100-byte file) fails fast without allocating', () => {
  const start = performance.now();
  const huge = { dtype: 'F32', shape: [1e15], data_offsets: [0, 4e15] };
  throwsWith(() => parseSafetensors(rawFile({ huge }, 100 - 8 - JSON.stringify({ huge }).length)), SafetensorsError, [/'huge'/, /\[0, 4000000000000000\]/, /data buffer/]);
  throwsWith(() => parseSafetensors(rawFile({ huge: { ...huge, data_offsets: [0, 4] } }, 4)), SafetensorsError, [/'huge'/, /needs 4000000000000000 bytes/]);
  throwsWith(() => parseSafetensors(rawFile({ huge: { shape: [1e8, 1e8, 1e8], dtype: 'F16', data_offsets: [0, 4] } }, 4)), SafetensorsError, [/'huge'/, /needs 2000000000000000000000000 bytes/]);
  throwsWith(() => parseSafetensors(rawFile('{}', 0, 2 ** 40)), SafetensorsError, [/absurd/]);
  assert.ok(performance.now() - start < 200, 'checked against the file size before any allocation');
});

io('parse option skipTensor drops int64 counters before the float check', () => {
  const bytes = rawFile({ 'bn.num_batches_tracked': { dtype: 'I64', shape: [], data_offsets: [0, 8] }, 'bn.weight': { ...one, data_offsets: [8, 16] } }, 16);
  throwsWith(() => parseSafetensors(bytes), SafetensorsError, [/num_batches_tracked/, /I64/]);
  assert.equal([...parseSafetensors(bytes, maskrcnnParseOptions).tensors.keys()], ['bn.weight']);
});

function fakeFetch(body: Uint8Array, chunk: number, init: { status?: number; headers?: Record<string, string>; truncateTo?: number } = {}): { fetchImpl: typeof fetch; urls: string[] } {
  const urls: string[] = [];
  const fetchImpl = (async (url: string | URL | Request) => {
    urls.push(String(url));
    const sent = body.subarray(0, init.truncateTo ?? body.length);
    let pos = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pos >= sent.length) return controller.close();
        controller.enqueue(sent.slice(pos, pos + chunk));
        pos += chunk;
      },
    });
    return new Response(stream, { status: init.status ?? 200, statusText: init.status === 404 ? 'Not Found' : '', headers: init.headers });
  }) as typeof fetch;
  return { fetchImpl, urls };
}

io('fetchSafetensors streams with progress, and reports HTTP errors, cut downloads and aborts', async () => {
  const bytes = serializeSafetensors({ w: t([1000], uniform(3, 1000)) });
  const calls: Array<[number, number | undefined]> = [];
  const { fetchImpl, urls } = fakeFetch(bytes, 1000, { headers: { 'content-length': String(bytes.length) } });
  const file = await fetchSafetensors('https://example.test/m.safetensors', { fetchImpl, onProgress: (l, tot) => calls.push([l, tot]) });
  assert.equal(urls, ['https://example.test/m.safetensors']);
  assert.equal(Array.from(file.tensors.get('w')!.data), Array.from(uniform(3, 1000)));
  assert.equal(calls[0], [0, bytes.length]);
  assert.equal(calls[calls.length - 1], [bytes.length, bytes.length]);
  assert.is(calls.length, 2 + Math.ceil(bytes.length / 1000) - 1);
  for (let i = 1; i < calls.length; i++) assert.ok(calls[i][0] > calls[i - 1][0], 'progress increases');

  const noLength: Array<number | undefined> = [];
  await fetchSafetensors('u', { fetchImpl: fakeFetch(bytes, 777).fetchImpl, onProgress: (_, tot) => noLength.push(tot) });
  assert.ok(noLength.every((x) => x === undefined), 'no content-length: total unknown');

  await rejectsWith(fetchSafetensors('https://example.test/missing.safetensors', { fetchImpl: fakeFetch(bytes, 100, { status: 404 }).fetchImpl }), [
    /https:\/\/example.test\/missing.safetensors/, /HTTP 404 Not Found/,
  ], SafetensorsError);
  await rejectsWith(
    fetchSafetensors('https://x/m', { fetchImpl: fakeFetch(bytes, 500, { headers: { 'content-length': String(bytes.length) }, truncateTo: 1500 }).fetchImpl }),
    [/https:\/\/x\/m/, new RegExp(`ended after 1500 of ${bytes.length} bytes`)],
    SafetensorsError,
  );
  await rejectsWith(fetchSafetensors('https://x/bad', { fetchImpl: fakeFetch(bytes.subarray(0, 40), 7).fetchImpl }), [/^https:\/\/x\/bad: /, /runs past the end/], SafetensorsError);
  const ac = new AbortController();
  const aborted = await rejectsWith(fetchSafetensors('https://x/m', { fetchImpl: fakeFetch(bytes, 100).fetchImpl, signal: ac.signal, onProgress: (l) => l > 300 && ac.abort() }), []);
  assert.is(aborted.name, 'AbortError');
});

io('writeFileAtomic refuses to overwrite without force; readSafetensorsFile names a missing path', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'maskgpu-weights-'));
  try {
    const path = join(dir, 'out.safetensors');
    const first = serializeSafetensors({ w: t([2], [1, 2]) });
    await writeFileAtomic(path, first);
    assert.equal(Array.from(await readFile(path)), Array.from(first));
    await rejectsWith(writeFileAtomic(path, new Uint8Array([1, 2, 3])), [new RegExp(`${path.replace(/[.]/g, '\\.')} already exists`), /--force/]);
    assert.equal(Array.from(await readFile(path)), Array.from(first), 'the refused write left the file alone');
    const second = serializeSafetensors({ w: t([2], [5, 6]) });
    await writeFileAtomic(path, second, { force: true });
    assert.equal(Array.from((await readSafetensorsFile(path)).tensors.get('w')!.data), [5, 6]);
    assert.equal(await readdir(dir), ['out.safetensors'], 'no temporary files left behind');
    await rejectsWith(writeFileAtomic(join(dir, 'no-such-dir', 'x.safetensors'), first), [/cannot write .*no-such-dir\/x\.safetensors/]);
    const missing = join(dir, 'nope.safetensors');
    await rejectsWith(readSafetensorsFile(missing), [new RegExp(missing.replace(/[.]/g, '\\.')), /tools\/export_torchvision\.py/], SafetensorsError);
    await writeFile(join(dir, 'bad.safetensors'), new Uint8Array(3));
    await rejectsWith(readSafetensorsFile(join(dir, 'bad.safetensors')), [/bad\.safetensors: file is 3 bytes/], SafetensorsError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

io('writeFileAtomic: a write that fails midway (file size limit, as a full disk) leaves the target as it was and no temporary file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'maskgpu-weights-'));
  try {
    writeFileSync(join(dir, 'old.safetensors'), 'previous');
    // A child process under `ulimit -f 64` (64 KiB): writing 1 MiB fails with EFBIG after a partial write.
    const script = `const { writeFileAtomic } = await import('./weights-loader/node.ts');
      for (const [name, force] of [['new.safetensors', false], ['old.safetensors', true]]) {
        await writeFileAtomic(${JSON.stringify(dir)} + '/' + name, new Uint8Array(1 << 20), { force }).then(() => console.log('WROTE'), (e) => console.log(e.message));
      }`;
    const r = spawnSync('bash', ['-c', 'ulimit -f 64; exec "$0" "$@"', process.execPath, '--import', './tools/register.mjs', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.is(lines.length, 2, r.stdout);
    assert.match(lines[0], /^cannot write .*new\.safetensors: EFBIG: file too large.*; it was left as it was$/);
    assert.match(lines[1], /^cannot write .*old\.safetensors: EFBIG/);
    assert.equal(readdirSync(dir), ['old.safetensors'], 'no partial file, no temporary file');
    assert.is(readFileSync(join(dir, 'old.safetensors'), 'utf8'), 'previous');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

io.run();

const model = suite('maskrcnn weights');

model('the synthetic model generator reproduces torchvision key list and shapes (TSV) at full width', async () => {
  const tsv = await readFile(new URL('./fixtures/weights/maskrcnn_v1_state_dict_keys.tsv', import.meta.url), 'utf8');
  const rows = tsv.trim().split('\n').map((line) => {
    const [key, shape, dtype] = line.split('\t');
    assert.is(dtype, 'float32');
    return [key, JSON.parse(shape.replace('(', '[').replace(/,?\)/, ']'))] as [string, number[]];
  });
  assert.is(rows.length, 307);
  assert.equal(maskrcnnV1Shapes({ widthDiv: 1, numClasses: 91 }), rows);
  assert.equal(maskrcnnV1KeyNames(), rows.map(([k]) => k));
});

function assertConv(p: { cout: number; cin: number; kh: number; kw: number; stride: number; padding: number; weight: Float32Array; bias: Float32Array }, want: [number, number, number, number, number], what: string): void {
  const [cout, cin, k, stride, padding] = want;
  assert.equal([p.cout, p.cin, p.kh, p.kw, p.stride, p.padding], [cout, cin, k, k, stride, padding], what);
  assert.is(p.weight.length, cout * cin * k * k, `${what} weight length`);
  assert.is(p.bias.length, cout, `${what} bias length`);
}

model('a narrow model (widths / 8, 5 classes) loads; every channel count comes from the shapes', () => {
  const w = loadMaskRCNNWeights(syntheticMaskRCNNFile({ blockWidths: { 'layer2.1': 37, 'layer3.0': [5, 11] } }));
  assertConv(w.stem, [8, 3, 7, 2, 3], 'stem');
  assert.equal(w.layers.map((l) => l.length), [3, 4, 6, 3]);
  w.layers.forEach((blocks, l) =>
    blocks.forEach((b, i) => {
      const s = i === 0 && l > 0 ? 2 : 1;
      assert.is(b.conv2.stride, s);
      assert.is(b.conv1.stride, 1);
      assert.is(b.conv3.stride, 1);
      assert.is(b.conv2.padding, 1);
      assert.is(b.downsample?.stride, i === 0 ? s : undefined);
      assert.is(b.conv3.cout, 32 << l);
    }),
  );
  assertConv(w.layers[1][1].conv1, [37, 64, 1, 1, 0], 'layer2.1.conv1 (pruned to 37)');
  assertConv(w.layers[1][1].conv2, [37, 37, 3, 1, 1], 'layer2.1.conv2');
  assertConv(w.layers[1][1].conv3, [64, 37, 1, 1, 0], 'layer2.1.conv3');
  assertConv(w.layers[2][0].conv2, [11, 5, 3, 2, 1], 'layer3.0.conv2');
  assertConv(w.layers[2][0].downsample!, [128, 64, 1, 2, 0], 'layer3.0.downsample');
  assertConv(w.layers[0][0].downsample!, [32, 8, 1, 1, 0], 'layer1.0.downsample');
  [32, 64, 128, 256].forEach((c, i) => {
    assertConv(w.fpn.inner[i], [32, c, 1, 1, 0], `fpn inner ${i}`);
    assertConv(w.fpn.layer[i], [32, 32, 3, 1, 1], `fpn layer ${i}`);
  });
  assertConv(w.rpn.conv, [32, 32, 3, 1, 1], 'rpn conv');
  assertConv(w.rpn.cls, [3, 32, 1, 1, 0], 'rpn cls');
  assertConv(w.rpn.bbox, [12, 32, 1, 1, 0], 'rpn bbox');
  assert.is(w.rpn.numAnchors, 3);
  assert.equal([w.boxHead.fc6.inFeatures, w.boxHead.fc6.outFeatures, w.boxHead.fc7.outFeatures], [32 * 49, 128, 128]);
  assert.equal([w.boxPredictor.cls.outFeatures, w.boxPredictor.bbox.outFeatures], [5, 20]);
  w.maskHead.forEach((c, k) => assertConv(c, [32, 32, 3, 1, 1], `mask head ${k}`));
  const d = w.maskPredictor.deconv;
  assert.equal([d.cin, d.cout, d.scale, d.weight.length, d.bias.length], [32, 32, 2, 32 * 32 * 4, 32]);
  assertConv(w.maskPredictor.logits, [5, 32, 1, 1, 0], 'mask logits');
  assert.equal(w.meta, {
    classes: ['class_0', 'class_1', 'class_2', 'class_3', 'class_4'], numClasses: 5, eps: 1e-5, minSize: 800, maxSize: 1333,
    imageMean: [0.485, 0.456, 0.406], imageStd: [0.229, 0.224, 0.225],
  });
  // Non-BN layers are passed through untouched.
  const sd = syntheticStateDict({ blockWidths: { 'layer2.1': 37, 'layer3.0': [5, 11] } });
  assert.equal(w.rpn.conv.weight, sd.get('rpn.head.conv.0.0.weight')!.data);
  assert.equal(w.maskPredictor.deconv.weight, sd.get('roi_heads.mask_predictor.conv5_mask.weight')!.data);
});

model('metadata: classes, eps, sizes, normalisation; COCO names by default for 91 classes', () => {
  const classes = ['__background__', 'cat', 'dog', 'bird', 'fish'];
  const meta = { classes: JSON.stringify(classes), eps: '0', min_size: '640', max_size: '1000', image_mean: '[0.5, 0.5, 0.5]', image_std: '[0.25,0.5,1]', format: 'pt' };
  const w = loadMaskRCNNWeights(syntheticMaskRCNNFile({}, meta));
  assert.equal(w.meta, { classes, numClasses: 5, eps: 0, minSize: 640, maxSize: 1000, imageMean: [0.5, 0.5, 0.5], imageStd: [0.25, 0.5, 1] });
  const coco = loadMaskRCNNWeights(syntheticMaskRCNNFile({ widthDiv: 16, numClasses: 91 }));
  assert.equal(coco.meta.classes, [...COCO_CLASSES]);
  assert.equal([coco.meta.classes[1], coco.meta.classes[12], coco.meta.classes[90]], ['person', 'N/A', 'toothbrush']);
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ classes: '["a","b"]' }, /'classes' names 2 classes but .*cls_score.* has 5/],
    [{ classes: 'cat,dog' }, /metadata 'classes' .*JSON array/],
    [{ eps: '-1' }, /metadata 'eps' is "-1"/],
    [{ eps: '' }, /metadata 'eps'/],
    [{ min_size: '12.5' }, /'min_size' is "12.5": expected a positive integer/],
    [{ image_std: '[1, 0, 1]' }, /'image_std'.*3 positive numbers/],
  ];
  for (const [md, re] of bad) throwsWith(() => loadMaskRCNNWeights(syntheticMaskRCNNFile({}, md)), WeightsError, [re]);
});

function assertSameWeights(a: MaskRCNNWeights, b: MaskRCNNWeights): void {
  const flatten = (w: MaskRCNNWeights) => {
    const arrays: Float32Array[] = [];
    const leaves: unknown[] = [];
    const walk = (v: unknown) => {
      if (v instanceof Float32Array) arrays.push(v);
      else if (v && typeof v === 'object') Object.values(v).forEach(walk);
      else leaves.push(v);
    };
    walk(w);
    return { arrays, leaves };
  };
  const fa = flatten(a);
  const fb = flatten(b);
  assert.equal(fa.leaves, fb.leaves);
  assert.is(fa.arrays.length, fb.arrays.length);
  fa.arrays.forEach((x, i) => {
    const c = compare(x, fb.arrays[i], exact, `weights array ${i}`);
    if (!c.ok) throw new Error(c.report);
  });
}

model('legacy (pre-0.13) names load identically; both forms of one key and num_batches_tracked', () => {
  const sd = syntheticStateDict();
  const legacy = toLegacyNames(sd);
  const legacyKeys = [...legacy.keys()].filter((k) => !sd.has(k));
  assert.is(legacyKeys.length, 26);
  assert.ok(legacyKeys.includes('backbone.fpn.inner_blocks.2.weight') && legacyKeys.includes('rpn.head.conv.bias') && legacyKeys.includes('roi_heads.mask_head.mask_fcn4.weight'));
  const a = loadMaskRCNNWeights({ metadata: {}, tensors: sd });
  legacy.set('backbone.body.layer1.0.bn1.num_batches_tracked', t([], [5]));
  const b = loadMaskRCNNWeights(parseSafetensors(serializeSafetensors(legacy)));
  assertSameWeights(a, b);
  const both = new Map(sd);
  both.set('roi_heads.mask_head.mask_fcn2.bias', sd.get('roi_heads.mask_head.1.0.bias')!);
  throwsWith(() => canonicalizeKeys(both), WeightsError, [/'roi_heads.mask_head.1.0.bias' and 'roi_heads.mask_head.mask_fcn2.bias' are present/]);
});

model('F16 file of the narrow model loads with the values it stores', () => {
  const sd = syntheticStateDict();
  const file = parseSafetensors(serializeSafetensors(sd, { eps: '0' }, { dtype: 'F16' }));
  const w = loadMaskRCNNWeights(file);
  assert.is(w.meta.eps, 0);
  const key = 'roi_heads.box_head.fc6.weight';
  assertClose(w.boxHead.fc6.weight, Array.from(sd.get(key)!.data, (x) => halfToFloat(floatToHalf(x))), exact, key);
});

model('FrozenBatchNorm folding equals float64 conv-then-BN, standalone and inside the loaded model', () => {
  // A stride-2 3x3 conv on an odd input, 5 -> 7 channels, with awkward BN statistics.
  const a = { batch: 2, cin: 5, cout: 7, h: 9, w: 8, kh: 3, kw: 3, stride: [2, 2] as [number, number], padding: [1, 1] as [number, number] };
  const x = normal(11, a.batch * a.cin * a.h * a.w);
  const wt = normal(12, a.cout * a.cin * 9, 0.3);
  const bn = { weight: uniform(13, 7, -2, 2), bias: uniform(14, 7, -1, 1), running_mean: uniform(15, 7, -1, 1), running_var: uniform(16, 7, 1e-3, 4) };
  for (const eps of [0, 1e-5, 0.1]) {
    const f = foldFrozenBatchNorm(wt, 7, bn, eps);
    assertClose(conv2dRef(a, x, f.weight, f.bias).data, convThenBatchNormRef(a, x, wt, bn, eps), bnFold, `fold eps ${eps}`);
  }
  const f0 = foldFrozenBatchNorm(wt, 7, bn, 0);
  const f5 = foldFrozenBatchNorm(wt, 7, bn, 1e-5);
  assert.ok(f0.weight.some((v, i) => v !== f5.weight[i]), 'eps changes the folded weights');

  for (const eps of ['0', '1e-5']) {
    const sd = syntheticStateDict({ blockWidths: { 'layer2.1': 37 } });
    const w = loadMaskRCNNWeights({ metadata: { eps }, tensors: sd });
    const p = 'backbone.body.layer2.1';
    const conv = w.layers[1][1].conv2;
    const c = { batch: 1, cin: 37, cout: 37, h: 6, w: 5, kh: 3, kw: 3, padding: [1, 1] as [number, number] };
    const input = normal(21, 37 * 30);
    const bnp = { weight: sd.get(`${p}.bn2.weight`)!.data, bias: sd.get(`${p}.bn2.bias`)!.data, running_mean: sd.get(`${p}.bn2.running_mean`)!.data, running_var: sd.get(`${p}.bn2.running_var`)!.data };
    assertClose(conv2dRef(c, input, conv.weight, conv.bias).data, convThenBatchNormRef(c, input, sd.get(`${p}.conv2.weight`)!.data, bnp, Number(eps)), bnFold, `${p}.conv2 eps ${eps}`);
    const s = { batch: 1, cin: 3, cout: 8, h: 11, w: 9, kh: 7, kw: 7, stride: [2, 2] as [number, number], padding: [3, 3] as [number, number] };
    const img = uniform(22, 3 * 99);
    const bn1 = { weight: sd.get('backbone.body.bn1.weight')!.data, bias: sd.get('backbone.body.bn1.bias')!.data, running_mean: sd.get('backbone.body.bn1.running_mean')!.data, running_var: sd.get('backbone.body.bn1.running_var')!.data };
    assertClose(conv2dRef(s, img, w.stem.weight, w.stem.bias).data, convThenBatchNormRef(s, img, sd.get('backbone.body.conv1.weight')!.data, bn1, Number(eps)), bnFold, `stem eps ${eps}`);
  }
});

/** Loads the narrow model after `edit`; returns the error, which must name `key`. */
function modelError(edit: (sd: Map<string, Tensor>) => void, key: string, patterns: RegExp[] = []): WeightsError {
  const sd = syntheticStateDict();
  edit(sd);
  const e = throwsWith(() => loadMaskRCNNWeights({ metadata: {}, tensors: sd }), WeightsError, patterns);
  assert.ok(e.message.includes(`'${key}'`), `error names '${key}': ${e.message}`);
  return e;
}
const reshape = (sd: Map<string, Tensor>, key: string, shape: number[], seed = 5) =>
  sd.set(key, { dtype: 'F32', shape, data: normal(seed, shape.reduce((a, b) => a * b, 1), 0.1) });

model('model errors name the key: missing, wrong shape, producer/consumer channels, class counts', () => {
  modelError((sd) => sd.delete('backbone.body.layer3.2.bn2.running_var'), 'backbone.body.layer3.2.bn2.running_var', [/missing tensor/, /ResNet layer3 block 2/, /tools\/export_torchvision\.py/]);
  modelError((sd) => sd.delete('roi_heads.mask_predictor.mask_fcn_logits.bias'), 'roi_heads.mask_predictor.mask_fcn_logits.bias', [/missing tensor/, /mask predictor/]);
  modelError((sd) => reshape(sd, 'rpn.head.conv.0.0.weight', [32, 32, 1, 1]), 'rpn.head.conv.0.0.weight', [/shape \[32, 32, 1, 1\], expected \[out, in, 3, 3\]/]);
  modelError((sd) => reshape(sd, 'backbone.body.layer1.1.bn3.weight', [31]), 'backbone.body.layer1.1.bn3.weight', [/shape \[31\], expected \[32\]/]);
  modelError((sd) => reshape(sd, 'backbone.body.layer2.0.conv1.weight', [16, 24, 1, 1]), 'backbone.body.layer2.0.conv1.weight', [/takes 24 input channels but layer1 .* outputs 32/]);
  modelError((sd) => reshape(sd, 'backbone.body.conv1.weight', [8, 4, 7, 7]), 'backbone.body.conv1.weight', [/takes 4 input channels but the RGB image outputs 3/]);
  modelError(
    (sd) => {
      reshape(sd, 'backbone.body.layer3.1.conv3.weight', [120, 32, 1, 1]);
      for (const s of ['weight', 'bias', 'running_mean', 'running_var']) sd.set(`backbone.body.layer3.1.bn3.${s}`, { dtype: 'F32', shape: [120], data: uniform(3, 120, 0.5, 1) });
    },
    'backbone.body.layer3.1.conv3.weight',
    [/outputs 120 channels but the residual it is added to \(layer3 \('backbone.body.layer3.0.conv3'\)\) has 128/],
  );
  modelError((sd) => reshape(sd, 'backbone.fpn.inner_blocks.2.0.weight', [32, 100, 1, 1]), 'backbone.fpn.inner_blocks.2.0.weight', [/takes 100 input channels but layer3 .* outputs 128/]);
  modelError((sd) => reshape(sd, 'roi_heads.box_head.fc6.weight', [128, 1000]), 'roi_heads.box_head.fc6.weight', [/takes 1000 input features but the 7x7 RoIAlign of 32 FPN channels \(32\*7\*7\) gives 1568/]);
  modelError(
    (sd) => {
      reshape(sd, 'roi_heads.box_predictor.bbox_pred.weight', [24, 128]);
      reshape(sd, 'roi_heads.box_predictor.bbox_pred.bias', [24]);
    },
    'roi_heads.box_predictor.bbox_pred.weight',
    [/24 outputs .* 5 classes: expected 4 x 5 = 20/],
  );
  modelError(
    (sd) => {
      reshape(sd, 'roi_heads.mask_predictor.mask_fcn_logits.weight', [6, 32, 1, 1]);
      reshape(sd, 'roi_heads.mask_predictor.mask_fcn_logits.bias', [6]);
    },
    'roi_heads.mask_predictor.mask_fcn_logits.weight',
    [/6 classes but .* has 5/],
  );
  modelError(
    (sd) => {
      reshape(sd, 'rpn.head.bbox_pred.weight', [8, 32, 1, 1]);
      reshape(sd, 'rpn.head.bbox_pred.bias', [8]);
    },
    'rpn.head.bbox_pred.weight',
    [/8 outputs .* 3 anchors .* expected 4 x 3 = 12/],
  );
  modelError((sd) => reshape(sd, 'roi_heads.mask_predictor.conv5_mask.weight', [16, 32, 2, 2]), 'roi_heads.mask_predictor.conv5_mask.weight', [/takes 16 input channels/]);
});

model('model errors name the key: NaN/Inf, zero variance with eps 0, wrong dtype, v2 and foreign keys', () => {
  modelError((sd) => (sd.get('roi_heads.box_head.fc7.weight')!.data[77] = NaN), 'roi_heads.box_head.fc7.weight', [/NaN at index 77/]);
  modelError((sd) => (sd.get('backbone.body.layer4.2.bn1.running_mean')!.data[3] = -Infinity), 'backbone.body.layer4.2.bn1.running_mean', [/-Infinity at index 3/]);
  const sd = syntheticStateDict();
  sd.get('backbone.body.layer1.0.bn2.running_var')!.data[4] = 0;
  throwsWith(() => loadMaskRCNNWeights({ metadata: { eps: '0' }, tensors: sd }), WeightsError, [/'backbone.body.layer1.0.bn2'/, /channel 4/, /'eps' metadata/]);
  loadMaskRCNNWeights({ metadata: {}, tensors: sd }); // eps 1e-5 keeps it finite

  const bytes = serializeSafetensors(syntheticStateDict());
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  header['backbone.body.bn1.running_mean'].dtype = 'I32';
  throwsWith(() => parseSafetensors(rawFile(header, bytes.subarray(8 + n))), SafetensorsError, [/'backbone.body.bn1.running_mean' has dtype I32/, /only float tensors/]);

  modelError((sd2) => reshape(sd2, 'roi_heads.box_head.0.0.weight', [32, 32, 3, 3]), 'roi_heads.box_head.0.0.weight', [/1 unexpected tensor/, /maskrcnn_resnet50_fpn_v2/]);
  modelError((sd2) => reshape(sd2, 'backbone.fpn.layer_blocks.1.1.running_var', [32]), 'backbone.fpn.layer_blocks.1.1.running_var', [/_v2/]);
  modelError((sd2) => reshape(sd2, 'roi_heads.mask_head.2.1.weight', [32]), 'roi_heads.mask_head.2.1.weight', [/_v2/]);
  modelError((sd2) => reshape(sd2, 'rpn.head.conv.1.0.weight', [32, 32, 3, 3]), 'rpn.head.conv.1.0.weight', [/_v2/]);
  const e = modelError(
    (sd2) => ['fc.weight', 'fc.bias', 'layer5.w', 'a', 'b', 'c', 'd'].forEach((k) => reshape(sd2, k, [2])),
    'fc.weight',
    [/7 unexpected tensors/, /'fc.bias', 'layer5.w', 'a', 'b' and 2 more/, /export_torchvision/],
  );
  assert.not.match(e.message, /'c'/);
  const wrapped = new Map([...syntheticStateDict()].map(([k, v]) => [`module.${k}`, v]));
  throwsWith(() => loadMaskRCNNWeights({ metadata: {}, tensors: wrapped }), WeightsError, [/307 unexpected tensors/, /'module\.' prefix/]);
});

model.run();
