// Device acquisition for the browser (navigator.gpu) and Node (the `webgpu` package, Dawn).
// Requests the adapter's real limits and the optional features maskgpu can use, reports what it
// got, and turns "no adapter", uncaptured errors and device loss into errors a user can act on.

export const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'] as const;
export type OptionalFeature = (typeof OPTIONAL_FEATURES)[number];

/** The limits maskgpu sizes its plans by; requested at the adapter's maximum. */
export const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** 'node-dawn' or 'browser'. */
  runtime: 'node-dawn' | 'browser';
  features: OptionalFeature[];
  limits: Record<(typeof REQUESTED_LIMITS)[number], number>;
  /** True for CPU adapters (lavapipe, SwiftShader): useful to size tests and explain timings. */
  isSoftware: boolean;
}

export interface AcquireOptions {
  /** 'high-performance' by default. */
  powerPreference?: GPUPowerPreference;
  /** Features to leave off even when the adapter has them (e.g. to test the fp32-only path). */
  disableFeatures?: OptionalFeature[];
  /** Called once per uncaptured error (validation, out-of-memory, internal); default: console.error. */
  onUncapturedError?: (error: GPUError) => void;
  /** Called when the device is lost for any reason other than `device.destroy()`. */
  onLost?: (info: GPUDeviceLostInfo) => void;
  /** Dawn toggles for Node, e.g. ['adapter=SwiftShader'] (default: timestamps unquantised); ignored in the browser. */
  dawnFlags?: string[];
}

export interface AcquiredDevice {
  device: GPUDevice;
  adapter: GPUAdapter;
  report: AdapterReport;
}

export class NoAdapterError extends Error {
  override name = 'NoAdapterError';
}

const INSTALL_HINT =
  'maskgpu needs a WebGPU adapter. In a browser: use a WebGPU-capable one (Chrome/Edge 113+, ' +
  'Firefox 141+, Safari 26+) on a secure context (https or http://localhost). In Node: install a Vulkan ' +
  'driver for your GPU; on a machine without a GPU install Mesa >= 24 lavapipe ' +
  '(Debian 12: `apt-get install -t bookworm-backports mesa-vulkan-drivers`; Ubuntu 24.04: `apt-get install mesa-vulkan-drivers`), ' +
  'then check with `vulkaninfo --summary`.';

const nodeGpus = new Map<string, Promise<GPU>>();

/** True under Node (no Node types here: the engine must bundle for browsers). */
function isNodeRuntime(): boolean {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return !!proc?.versions?.node;
}

/** navigator.gpu in a browser; Dawn through the `webgpu` package in Node. */
async function getGpu(dawnFlags: string[]): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (!isNodeRuntime()) {
    throw new NoAdapterError(`navigator.gpu is not available in this browser or context. ${INSTALL_HINT}`);
  }
  const key = dawnFlags.join('\n');
  const cached = nodeGpus.get(key);
  if (cached) return cached;
  const created = (async () => {
    let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
    try {
      const name = 'webgpu'; // a variable keeps bundlers from pulling Dawn into browser builds
      mod = await import(/* @vite-ignore */ name);
    } catch (cause) {
      throw new NoAdapterError(
        `could not load the 'webgpu' npm package (Dawn for Node): ${(cause as Error).message}. Run \`npm install webgpu\`.`,
      );
    }
    // Dawn's GPUBufferUsage, GPUMapMode, ... are not globals in Node unless installed.
    for (const [k, v] of Object.entries(mod.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
    return mod.create(dawnFlags);
  })();
  nodeGpus.set(key, created);
  return created;
}

function isSoftwareAdapter(info: { vendor?: string; architecture?: string; device?: string; description?: string }): boolean {
  const text = `${info.vendor ?? ''} ${info.architecture ?? ''} ${info.device ?? ''} ${info.description ?? ''}`.toLowerCase();
  return /llvmpipe|lavapipe|swiftshader|software|cpu/.test(text);
}

/** Returns a device with the adapter's full limits and every optional feature it offers. */
export async function acquireDevice(options: AcquireOptions = {}): Promise<AcquiredDevice> {
  const isNode = isNodeRuntime() && !(globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  // Dawn rounds timestamps to 65.5 us unless told not to (a browser's timing side-channel defence;
  // Node has no cross-origin code to defend against), which would quantise the per-stage times.
  const gpu = await getGpu(options.dawnFlags ?? ['disable-dawn-features=timestamp_quantization']);
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  } catch (cause) {
    throw new NoAdapterError(`requestAdapter failed: ${(cause as Error).message}. ${INSTALL_HINT}`);
  }
  if (!adapter) throw new NoAdapterError(`no WebGPU adapter was found. ${INSTALL_HINT}`);

  const skip = new Set(options.disableFeatures ?? []);
  const features = OPTIONAL_FEATURES.filter((f) => adapter!.features.has(f) && !skip.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) requiredLimits[name] = adapter.limits[name];

  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const report: AdapterReport = {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    runtime: isNode ? 'node-dawn' : 'browser',
    features,
    limits: Object.fromEntries(REQUESTED_LIMITS.map((n) => [n, device.limits[n]])) as AdapterReport['limits'],
    isSoftware: isSoftwareAdapter(info),
  };

  const onError = options.onUncapturedError ?? ((e: GPUError) => console.error(`maskgpu: uncaptured WebGPU error: ${e.message}`));
  device.addEventListener('uncapturederror', (event) => onError((event as GPUUncapturedErrorEvent).error));
  device.lost.then((lost) => {
    if (lost.reason === 'destroyed') return;
    if (options.onLost) options.onLost(lost);
    else console.error(`maskgpu: the WebGPU device was lost (${lost.reason}): ${lost.message}. Acquire a new device and rebuild the model.`);
  });
  return { device, adapter, report };
}

/** One line for logs: "lavapipe (llvmpipe (LLVM 19.1.7, 256 bits)) [shader-f16, subgroups]". */
export function describeAdapter(r: AdapterReport): string {
  const name = [r.vendor, r.architecture, r.device, r.description].filter(Boolean).join(' / ') || 'unknown adapter';
  return `${name} via ${r.runtime}${r.isSoftware ? ' (software)' : ''} [${r.features.join(', ') || 'no optional features'}]`;
}
