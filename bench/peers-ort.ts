// One ONNX Runtime engine on the exported ResNet-50-FPN backbone, for bench/peers.ts, which runs
// each engine in its own process (a crash, hang or leak of one cannot touch the others or maskgpu).
// It runs the model once on maskgpu's own preprocessed input and checks all 5 outputs against
// maskgpu's FPN maps (max abs error, and relative to the map's largest magnitude); only a
// passing engine is timed: median of session.run() over the repeats after the warm-up runs,
// from CPU tensors (the input upload and the read-back of the 5 maps are inside the time).
//
//   node --import ./tools/register.mjs bench/peers-ort.ts --engine E --model backbone.onnx
//        --reference fpn.safetensors --out result.json [--repeats 5] [--warmup 1] [--budget-s 300] [--threads 2]
//
// Engines: ort-node-cpu (onnxruntime-node, CPU EP), ort-node-webgpu (onnxruntime-node's bundled
// WebGPU EP: its own Dawn, Vulkan), ort-web-jsep (onnxruntime-web/all: the JSEP WebGPU backend,
// what a browser page gets from `import 'onnxruntime-web'`), ort-web-webgpu
// (onnxruntime-web/webgpu: the C++ WebGPU EP compiled to wasm). The web engines get navigator.gpu
// from the `webgpu` package (Dawn), the adapter maskgpu runs on.

import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseSafetensors, type Tensor } from '../weights-loader/safetensors.ts';
import { median } from './timing.ts';
import { parseScriptArgs, type ParsedCommandLine } from '../io/args.ts';

export const ORT_ENGINES = {
  'ort-node-cpu': { pkg: 'onnxruntime-node', ep: 'cpu', what: 'onnxruntime-node, CPU EP' },
  'ort-node-webgpu': { pkg: 'onnxruntime-node', ep: 'webgpu', what: "onnxruntime-node's WebGPU EP (its own Dawn)" },
  'ort-web-jsep': { pkg: 'onnxruntime-web/all', ep: 'webgpu', what: 'onnxruntime-web, JSEP WebGPU' },
  'ort-web-webgpu': { pkg: 'onnxruntime-web/webgpu', ep: 'webgpu', what: 'onnxruntime-web/webgpu, C++ WebGPU EP in wasm' },
} as const;
export type OrtEngine = keyof typeof ORT_ENGINES;

/** ONNX Runtime's packages, pinned: they are not dependencies of maskgpu (see bench/README.md, "Peers"). */
export const ORT_INSTALL = 'ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save onnxruntime-node@1.30.0 onnxruntime-web@1.30.0';

export const OUTPUT_NAMES = ['fpn0', 'fpn1', 'fpn2', 'fpn3', 'pool'];
/** An engine passes when every output's max abs error is within this fraction of the map's largest magnitude. */
export const MAX_RELATIVE_ERROR = 1e-3;

export interface OutputCheck {
  name: string;
  maxAbs: number;
  maxRef: number;
  relative: number;
}

export interface OrtResult {
  engine: OrtEngine;
  what: string;
  /** The software Vulkan drivers this process mapped (/proc/self/maps), when it mapped any. */
  vulkanDriver?: string;
  /** navigator.gpu's adapter, for the web engines (the `webgpu` package's, as maskgpu's). */
  adapter?: string;
  createMs?: number;
  firstRunMs?: number;
  /** Warm-up runs after the check run (0 when the check run alone outlasted the budget). */
  warmupRuns?: number;
  samplesMs?: number[];
  medianMs?: number;
  checks?: OutputCheck[];
  passed?: boolean;
  /** Why it did not run, or failed. */
  error?: string;
  skipped?: boolean;
}

// Dawn's Node binding rejects SharedArrayBuffer data in queue.writeBuffer ('Invalid argument',
// 'no overload matched'), and ONNX Runtime Web's wasm memory is shared (its builds are threaded),
// so every upload from wasm memory fails. Browsers accept it; copying the written range into
// an ordinary buffer gives the same result.
function acceptSharedMemoryInWriteBuffer(queueProto: GPUQueue): void {
  const write = queueProto.writeBuffer;
  queueProto.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource | SharedArrayBuffer, dataOffset = 0, size?: number) {
    if (data instanceof SharedArrayBuffer) {
      return write.call(this, buffer, offset, new Uint8Array(data, dataOffset, size ?? data.byteLength - dataOffset).slice());
    }
    if (ArrayBuffer.isView(data) && data.buffer instanceof SharedArrayBuffer && !(data instanceof DataView)) {
      const view = data as unknown as Uint8Array; // any typed array: offsets are in its elements
      return write.call(this, buffer, offset, view.slice(dataOffset, dataOffset + (size ?? view.length - dataOffset)));
    }
    return write.call(this, buffer, offset, data as BufferSource, dataOffset, size);
  } as GPUQueue['writeBuffer'];
}

/** navigator.gpu from the `webgpu` package (Dawn); returns its default adapter's description. */
async function installNavigatorGpu(): Promise<string> {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  acceptSharedMemoryInWriteBuffer((globals as { GPUQueue: { prototype: GPUQueue } }).GPUQueue.prototype);
  const gpu = create([]);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  const info = (await gpu.requestAdapter())?.info;
  return info ? `${info.vendor} ${info.device}`.trim() || info.description : 'no adapter';
}

// The Vulkan loader maps every installed driver, so the list alone does not say which one runs;
// on a machine whose only Vulkan device is lavapipe, no SwiftShader mapped means lavapipe.
function vulkanDriver(): string | undefined {
  const maps = readFileSync('/proc/self/maps', 'utf8');
  const found = [/libvulkan_lvp/.test(maps) && 'lavapipe', /swiftshader/i.test(maps) && 'SwiftShader'].filter(Boolean);
  return found.length ? found.join(' and ') : undefined;
}

function compare(name: string, got: Float32Array, want: Float32Array): OutputCheck {
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= maxAbs)) maxAbs = d; // NaN propagates as a failure
    maxRef = Math.max(maxRef, Math.abs(want[i]));
  }
  return { name, maxAbs, maxRef, relative: maxAbs / maxRef };
}

// The part of ONNX Runtime's JS API used here, typed locally: the packages are optional, so
// their types may be absent when maskgpu is typechecked.
interface OrtTensor {
  dims: readonly number[];
  data: unknown;
}
interface OrtSession {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface OrtModule {
  env: { wasm: { numThreads?: number } };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
  InferenceSession: { create(model: Uint8Array, options: Record<string, unknown>): Promise<OrtSession> };
}

const ORT_ARGS = {
  command: 'bench/peers-ort.ts',
  usage: `usage: node --import ./tools/register.mjs bench/peers-ort.ts --engine E --model backbone.onnx
       --reference fpn.safetensors --out result.json [--repeats 5] [--warmup 1] [--budget-s 300] [--threads 2]
  (bench/peers.ts runs it, one process per engine; see its header)`,
  options: {
    engine: { type: 'string', required: true },
    model: { type: 'string', required: true },
    reference: { type: 'string', required: true },
    out: { type: 'string', required: true },
    repeats: { type: 'number', integer: true, min: 1, default: 5 },
    warmup: { type: 'number', integer: true, min: 0, default: 1 },
    'budget-s': { type: 'number', above: 0, default: 300 },
    threads: { type: 'number', integer: true, min: 1, default: 2 },
  },
} as const;
type OrtArgs = ParsedCommandLine<typeof ORT_ARGS.options>['values'];

async function run(opt: OrtArgs): Promise<OrtResult> {
  const engine = opt.engine as OrtEngine;
  const spec = ORT_ENGINES[engine];
  if (!spec) throw new Error(`--engine ${engine}: one of ${Object.keys(ORT_ENGINES).join(', ')}`);
  const [repeats, warmup, budgetMs, threads] = [opt.repeats, opt.warmup, 1e3 * opt['budget-s'], opt.threads];
  const result: OrtResult = { engine, what: spec.what };

  if (spec.pkg.startsWith('onnxruntime-web')) result.adapter = await installNavigatorGpu();
  let ort: OrtModule;
  try {
    const mod = await import(spec.pkg);
    ort = (mod.default ?? mod) as OrtModule;
  } catch (e) {
    return { ...result, skipped: true, error: `${spec.pkg} is not installed (${(e as Error).message.split('\n')[0]}); install it with: ${ORT_INSTALL}` };
  }
  if (spec.pkg.startsWith('onnxruntime-web')) ort.env.wasm.numThreads = 1; // the work is on the GPU; no wasm worker threads

  const reference = parseSafetensors(new Uint8Array(readFileSync(opt.reference))).tensors;
  const want = (name: string): Tensor => {
    const t = reference.get(name);
    if (!t) throw new Error(`${opt.reference} has no '${name}' tensor; bench/peers.ts writes it`);
    return t;
  };
  const input = want('input');
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(opt.model)), {
    executionProviders: [spec.ep],
    intraOpNumThreads: threads,
    graphOptimizationLevel: 'all',
  });
  result.createMs = performance.now() - t0;
  const feeds = { input: new ort.Tensor('float32', input.data as Float32Array, input.shape) };
  try {
    const t1 = performance.now();
    const first = await session.run(feeds);
    result.firstRunMs = performance.now() - t1;
    result.vulkanDriver = vulkanDriver();
    result.checks = OUTPUT_NAMES.map((name) => {
      const got = first[name];
      const ref = want(name);
      if (!got || got.dims.join('x') !== ref.shape.join('x')) {
        throw new Error(`output '${name}' has shape ${got?.dims.join('x')}, maskgpu's is ${ref.shape.join('x')}`);
      }
      return compare(name, got.data as Float32Array, ref.data as Float32Array);
    });
    result.passed = result.checks.every((c) => c.relative <= MAX_RELATIVE_ERROR);
    if (!result.passed) return { ...result, error: `outputs differ from maskgpu's FPN maps by more than ${MAX_RELATIVE_ERROR} relative: not timed` };

    // The check run compiled and allocated everything; when it alone outlasted the budget, it is
    // the only warm-up (the slow software-adapter engines would otherwise run for most of an hour).
    result.warmupRuns = result.firstRunMs > budgetMs ? 0 : warmup;
    const samples: number[] = [];
    const start = performance.now();
    for (let i = 0; i < result.warmupRuns + repeats; i++) {
      const ts = performance.now();
      await session.run(feeds);
      if (i >= result.warmupRuns) samples.push(performance.now() - ts);
      if (performance.now() - start > budgetMs && samples.length > 0) break;
    }
    return { ...result, samplesMs: samples, medianMs: median(samples) };
  } finally {
    await session.release();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values: opt } = parseScriptArgs(ORT_ARGS);
  let result: OrtResult;
  try {
    result = await run(opt);
  } catch (e) {
    const engine = opt.engine as OrtEngine;
    result = { engine, what: ORT_ENGINES[engine]?.what ?? engine, error: (e as Error).stack ?? String(e) };
  }
  writeFileSync(opt.out, JSON.stringify(result));
  // ONNX Runtime Web keeps wasm handles alive that would hold the process open; the result is written.
  process.exit(0);
}
