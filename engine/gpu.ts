// The engine's handle on a GPUDevice: tracked buffer allocation (live count and bytes, so leaks
// are measurable), a pipeline cache keyed by the shader and its specialised constants, bind groups
// built by binding *name* from the WGSL declarations, uploads/read-backs, and error scopes that
// turn validation and out-of-memory errors into exceptions. It also holds the per-device choices
// kernels read at plan time: the conv tile table (defaults, or a tuned table the application
// passes in: the library never reads a file on its own), the kernel tiers (quick-to-compile stand-ins
// for tuned kernels the driver has not compiled yet, engine/tiers.ts) and one empty buffer bound
// wherever a shader declares an optional binding the call does not use.

import { acquireDevice, OPTIONAL_FEATURES, REQUESTED_LIMITS, type AcquireOptions, type AdapterReport } from './device.ts';
import { kernelKey, TierBook, type KernelTiers } from './kernelTiers.ts';
import { checkConvTile, CONV_CLASSES, DEFAULT_CONV_TILING, type ConvClass, type ConvTile, type ConvTiling } from './kernels/convTiling.ts';
import { parseBindings, parseUniformStruct, packUniforms, specialize, type BindingDecl, type ConstValue, type UniformLayout } from './wgsl.ts';

export { kernelKey, type KernelTiers } from './kernelTiers.ts';

export class GpuError extends Error {
  override name = 'GpuError';
}

export interface Kernel {
  pipeline: GPUComputePipeline;
  bindGroupLayout: GPUBindGroupLayout;
  bindings: BindingDecl[];
  /** Layout of the struct bound as `params`, when the shader has one. */
  params?: UniformLayout;
  /** Workgroup size as specialised (x, y, z). */
  workgroup: [number, number, number];
  label: string;
  /** What it was made from (to compile it elsewhere, engine/tiers.ts). */
  spec: KernelSpec;
}

export interface KernelSpec {
  /** WGSL source (a .wgsl file's text). */
  source: string;
  label: string;
  entryPoint?: string;
  /** Values for `const` declarations in the source: the compile-time part of the spec. */
  consts?: Record<string, ConstValue>;
  /** Name of the uniform struct bound as `params` (default 'Params' when the source declares it). */
  paramsStruct?: string;
}

const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST (GPUBufferUsage may not be global yet)

export class GpuContext {
  private readonly kernels = new Map<string, Kernel>();
  private readonly allocations = new Map<GPUBuffer, number>();
  private peak = 0;
  private pipelineMs = 0;
  private liveBytes = 0;
  private lostInfo: GPUDeviceLostInfo | undefined;
  private tiling: Record<ConvClass, ConvTile> = { ...DEFAULT_CONV_TILING };
  private readonly tiers = new TierBook();
  /** A 16-byte buffer bound for optional bindings a dispatch does not use (no residual, no count, ...). */
  readonly unusedBinding: GPUBuffer;

  constructor(
    readonly device: GPUDevice,
    readonly report: AdapterReport,
  ) {
    device.lost.then((info) => {
      this.lostInfo = info;
    });
    this.unusedBinding = this.createBuffer('unused binding', 16);
  }

  /** The conv tile per conv class that plans built from now on use (engine/kernels/convTiling.ts). */
  get convTiling(): Readonly<Record<ConvClass, ConvTile>> {
    return this.tiling;
  }

  /**
   * Uses `table` (e.g. what `npm run tune` measured for this adapter; in Node io/tiles.ts reads
   * the cache file) over the defaults for the classes it names; undefined returns to the defaults.
   * Plans already built keep their tiles.
   */
  setConvTiling(table: ConvTiling | undefined): void {
    if (table) {
      for (const [cls, tile] of Object.entries(table)) {
        if (!(CONV_CLASSES as readonly string[]).includes(cls)) throw new Error(`unknown conv class '${cls}' (known: ${CONV_CLASSES.join(', ')})`);
        checkConvTile(tile as ConvTile, this.device.limits.maxComputeInvocationsPerWorkgroup);
      }
    }
    this.tiling = { ...DEFAULT_CONV_TILING, ...(table ?? {}) };
  }

  /** The kernel tiers plans built from now on use (engine/kernelTiers.ts). */
  get kernelTiers(): KernelTiers {
    return this.tiers.mode;
  }

  setKernelTiers(tiers: KernelTiers): void {
    this.tiers.setMode(tiers);
  }

  /**
   * The tuned kernel, or under 'tiered' its quick stand-in while the tuned one is not known compiled
   * (it is then listed by `wantedKernels()` for a background compile, engine/tiers.ts).
   */
  tieredKernel<T>(tuned: T, quick: T, specFor: (variant: T) => KernelSpec): { kernel: Kernel; variant: T } {
    const variant = this.tiers.choose(tuned, quick, specFor, (key) => this.kernels.has(key));
    return { kernel: this.kernel(specFor(variant)), variant };
  }

  /**
   * Like `tieredKernel` for a variant that dispatches several kernels (`specsFor` lists them all:
   * the tuned one is taken only when every one of them is compiled). The caller makes the kernels.
   */
  tieredVariant<T>(tuned: T, quick: T, specsFor: (variant: T) => KernelSpec[]): T {
    return this.tiers.choose(tuned, quick, specsFor, (key) => this.kernels.has(key));
  }

  /** Tuned kernels that quick stand-ins replaced and that are not compiled yet. */
  wantedKernels(): Array<{ key: string; spec: KernelSpec }> {
    return this.tiers.wantedKernels();
  }

  /**
   * Records that the driver holds these kernels compiled (a background compile finished, or an
   * application's record of earlier runs, e.g. io/kernelCache.ts): plans built from now on use them.
   */
  addCompiledKernels(keys: Iterable<string>): void {
    this.tiers.addCompiled(keys);
  }

  /** Keys of every kernel this context created or was told is compiled (what an application may persist). */
  compiledKernelKeys(): string[] {
    return [...new Set([...this.tiers.compiledKeys(), ...this.kernels.keys()])];
  }

  /** Counters a plan snapshots when it is built (TierBook.state). */
  get tierState(): { standIns: number; generation: number } {
    return this.tiers.state;
  }

  static async create(options: AcquireOptions = {}): Promise<GpuContext> {
    const { device, report } = await acquireDevice(options);
    const ctx = new GpuContext(device, report);
    ctx.acquireAnother = () => GpuContext.create({ ...options, onLost: () => undefined });
    return ctx;
  }

  /**
   * Acquires a second context like this one (set by `create`; an application that wraps its own
   * device with `fromDevice` may set it): background compiles run there, off this device's queue.
   */
  acquireAnother: (() => Promise<GpuContext>) | undefined;

  /** Wraps a device the application owns (its limits and features are whatever it requested). */
  static fromDevice(device: GPUDevice): GpuContext {
    const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    const features = OPTIONAL_FEATURES.filter((f) => device.features.has(f));
    const limits = Object.fromEntries(REQUESTED_LIMITS.map((n) => [n, device.limits[n]])) as AdapterReport['limits'];
    const isNode = !!(globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
    const report: AdapterReport = {
      vendor: info?.vendor ?? '',
      architecture: info?.architecture ?? '',
      device: info?.device ?? '',
      description: info?.description ?? '',
      runtime: isNode ? 'node-dawn' : 'browser',
      features,
      limits,
      isSoftware: /llvmpipe|lavapipe|swiftshader/i.test(`${info?.vendor} ${info?.architecture} ${info?.device} ${info?.description}`),
    };
    return new GpuContext(device, report);
  }

  /** Throws a clear error when the device is gone, instead of failing inside a kernel. */
  assertAlive(what?: string): void {
    if (this.lostInfo) {
      throw new GpuError(
        `${what ? `${what}: ` : ''}the WebGPU device was lost (${this.lostInfo.reason || 'unknown'}${this.lostInfo.message ? `: ${this.lostInfo.message}` : ''}); ` +
          'acquire a new device and rebuild the model',
      );
    }
  }

  // ---- buffers -------------------------------------------------------------------------------

  createBuffer(label: string, byteSize: number, usage: number = STORAGE_USAGE): GPUBuffer {
    this.assertAlive();
    const size = Math.max(16, Math.ceil(byteSize / 16) * 16);
    if (size > this.device.limits.maxBufferSize) {
      throw new GpuError(
        `buffer '${label}' needs ${size} bytes, over this adapter's maxBufferSize ${this.device.limits.maxBufferSize}; use a smaller input (--max-size)`,
      );
    }
    const buffer = this.device.createBuffer({ label, size, usage });
    this.allocations.set(buffer, size);
    this.liveBytes += size;
    this.peak = Math.max(this.peak, this.liveBytes);
    return buffer;
  }

  /** A storage buffer holding `data`. */
  upload(label: string, data: ArrayBufferView, usage: number = STORAGE_USAGE): GPUBuffer {
    const buffer = this.createBuffer(label, data.byteLength, usage);
    this.write(buffer, data);
    return buffer;
  }

  write(buffer: GPUBuffer, data: ArrayBufferView | ArrayBuffer, offset = 0): void {
    const view = (data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength)) as Uint8Array<ArrayBuffer>;
    // writeBuffer needs a multiple of 4 bytes.
    if (view.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(view.byteLength / 4) * 4);
      padded.set(view);
      this.device.queue.writeBuffer(buffer, offset, padded);
    } else {
      this.device.queue.writeBuffer(buffer, offset, view);
    }
  }

  release(buffer: GPUBuffer | undefined): void {
    if (!buffer) return;
    const size = this.allocations.get(buffer);
    if (size === undefined) return;
    this.allocations.delete(buffer);
    this.liveBytes -= size;
    buffer.destroy();
  }

  /** Live engine-allocated buffers: the leak tests compare this with a baseline. */
  get memory(): { buffers: number; bytes: number; peakBytes: number } {
    return { buffers: this.allocations.size, bytes: this.liveBytes, peakBytes: this.peak };
  }

  /** The engine's live buffers right now (a copy): tests release what a test left behind. */
  liveBuffers(): Set<GPUBuffer> {
    return new Set(this.allocations.keys());
  }

  resetPeak(): void {
    this.peak = this.liveBytes;
  }

  /** Copies `byteLength` bytes of `buffer` to the CPU (one staging buffer, freed after). */
  async read(buffer: GPUBuffer, byteLength = buffer.size, offset = 0): Promise<ArrayBuffer> {
    this.assertAlive();
    const size = Math.ceil(byteLength / 4) * 4;
    const staging = this.createBuffer('readback', size, 0x01 | 0x08); // MAP_READ | COPY_DST
    try {
      const enc = this.device.createCommandEncoder({ label: 'readback' });
      enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(0x0001); // GPUMapMode.READ
      return staging.getMappedRange(0, byteLength).slice(0);
    } catch (cause) {
      this.assertAlive();
      throw cause;
    } finally {
      this.release(staging);
    }
  }

  async readF32(buffer: GPUBuffer, count?: number, offsetElements = 0): Promise<Float32Array> {
    const n = count ?? buffer.size / 4 - offsetElements;
    return new Float32Array(await this.read(buffer, n * 4, offsetElements * 4));
  }

  async readU32(buffer: GPUBuffer, count?: number, offsetElements = 0): Promise<Uint32Array> {
    const n = count ?? buffer.size / 4 - offsetElements;
    return new Uint32Array(await this.read(buffer, n * 4, offsetElements * 4));
  }

  // ---- kernels -------------------------------------------------------------------------------

  /**
   * Compiles (once per source + constants + entry point: one pipeline per distinct code, shared by
   * every layer that asks for it, whatever its label) and returns the pipeline with its binding
   * table. The label names the pipeline after its first user.
   */
  kernel(spec: KernelSpec): Kernel {
    const consts = spec.consts ?? {};
    const key = kernelKey(spec);
    const cached = this.kernels.get(key);
    if (cached) return cached;
    const started = performance.now();

    this.assertAlive();
    const code = specialize(spec.source, consts);
    const bindings = parseBindings(code);
    const bindGroupLayout = this.device.createBindGroupLayout({
      label: spec.label,
      entries: bindings.map((b) => ({
        binding: b.binding,
        visibility: 0x4, // GPUShaderStage.COMPUTE
        buffer: { type: b.kind },
      })),
    });
    const module = this.device.createShaderModule({ label: spec.label, code });
    const pipeline = this.device.createComputePipeline({
      label: spec.label,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] }),
      compute: { module, entryPoint: spec.entryPoint ?? 'main' },
    });
    const structName = spec.paramsStruct ?? 'Params';
    const params = bindings.some((b) => b.name === 'params') ? parseUniformStruct(code, structName) : undefined;
    const kernel: Kernel = { pipeline, bindGroupLayout, bindings, params, workgroup: workgroupSize(code), label: spec.label, spec };
    this.kernels.set(key, kernel);
    this.pipelineMs += performance.now() - started;
    return kernel;
  }

  /** Pipelines this context created (one per distinct specialised code) and the CPU time spent creating them. */
  get pipelines(): { count: number; createMs: number; labels: string[] } {
    return { count: this.kernels.size, createMs: this.pipelineMs, labels: [...this.kernels.values()].map((k) => k.label) };
  }

  /** The specs of the pipelines this context created, in creation order. */
  kernelSpecs(): KernelSpec[] {
    return [...this.kernels.values()].map((k) => k.spec);
  }

  /** A uniform buffer holding `values` packed by the kernel's `params` struct. */
  params(kernel: Kernel, values: Record<string, number>): GPUBuffer {
    if (!kernel.params) throw new Error(`kernel ${kernel.label} has no 'params' uniform`);
    return this.upload(`${kernel.label}.params`, new Uint8Array(packUniforms(kernel.params, values)), 0x40 | 0x08); // UNIFORM | COPY_DST
  }

  /** Bind group by binding name; every declared binding must be given, and nothing else. */
  bindGroup(kernel: Kernel, resources: Record<string, GPUBuffer>): GPUBindGroup {
    const given = new Set(Object.keys(resources));
    const entries = kernel.bindings.map((b) => {
      const buffer = resources[b.name];
      if (!buffer) throw new Error(`kernel ${kernel.label}: binding '${b.name}' was not given`);
      given.delete(b.name);
      return { binding: b.binding, resource: { buffer } };
    });
    if (given.size) throw new Error(`kernel ${kernel.label}: no binding named ${[...given].join(', ')}`);
    return this.device.createBindGroup({ label: kernel.label, layout: kernel.bindGroupLayout, entries });
  }

  /**
   * Runs `fn` inside validation, out-of-memory and internal error scopes and throws the first
   * error any of them caught (after `fn`'s own work was submitted).
   */
  async checked<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
    this.assertAlive();
    const d = this.device;
    d.pushErrorScope('internal');
    d.pushErrorScope('out-of-memory');
    d.pushErrorScope('validation');
    let result: T | undefined;
    let thrown: unknown;
    try {
      result = await fn();
    } catch (e) {
      thrown = e;
    }
    // A device lost mid-call rejects its pending work with a bare AbortError and may reject the
    // pops too: report the loss itself, which says what to do.
    let scopes: Array<GPUError | null> = [null, null, null];
    try {
      scopes = [await d.popErrorScope(), await d.popErrorScope(), await d.popErrorScope()];
    } catch (e) {
      thrown ??= e;
    }
    const [validation, oom, internal] = scopes;
    if (thrown) {
      if (!this.lostInfo && (thrown as Error)?.name === 'AbortError') await Promise.race([d.lost, new Promise((r) => setTimeout(r, 100))]);
      this.assertAlive(what);
      throw thrown;
    }
    if (oom) throw new GpuError(`${what}: out of GPU memory (${oom.message}); use a smaller input size or free other models`);
    if (validation) throw new GpuError(`${what}: WebGPU validation error: ${validation.message}`);
    if (internal) throw new GpuError(`${what}: WebGPU internal error: ${internal.message}`);
    this.assertAlive(what);
    return result as T;
  }

  destroy(): void {
    for (const b of [...this.allocations.keys()]) this.release(b);
    this.kernels.clear();
  }
}

function workgroupSize(code: string): [number, number, number] {
  const m = /@workgroup_size\(([^)]*)\)/.exec(code);
  if (!m) return [1, 1, 1];
  const parts = m[1].split(',').map((s) => {
    const t = s.trim();
    const lit = /^(\d+)u?$/.exec(t);
    if (lit) return Number(lit[1]);
    const c = new RegExp(`const\\s+${t}\\s*:\\s*\\w+\\s*=\\s*(\\d+)u?\\s*;`).exec(code);
    if (!c) throw new Error(`workgroup size '${t}' is not a literal or a specialisable const`);
    return Number(c[1]);
  });
  return [parts[0] ?? 1, parts[1] ?? 1, parts[2] ?? 1];
}

/** Splits a 1-D count of workgroups into (x, y) under the per-dimension limit. */
export function grid1d(workgroups: number, maxPerDim = 65535): [number, number] {
  if (workgroups <= maxPerDim) return [Math.max(1, workgroups), 1];
  const y = Math.ceil(workgroups / maxPerDim);
  return [Math.ceil(workgroups / y), y];
}
