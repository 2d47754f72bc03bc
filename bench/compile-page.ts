// The page `npm run bench:coldstart -- --parts browser-kernels` loads in Chromium: compiles each
// kernel spec of /specs.json alone on a fresh device (compatibility mode when ?featureLevel=
// compatibility, as the demo asks for Chromium's GL ES adapter) and reports the wall time of each,
// creation plus one empty dispatch (engine/tiers.ts compileKernels), in window.compileTimes.

import { OPTIONAL_FEATURES } from '../engine/device.ts';
import { GpuContext, type KernelSpec } from '../engine/gpu.ts';
import { compileKernels } from '../engine/tiers.ts';

declare global {
  interface Window {
    compileTimes?: { rows: Array<{ label: string; ms: number }>; adapter: string } | { error: string };
  }
}

async function device(featureLevel: string | null): Promise<GpuContext> {
  if (!navigator.gpu) throw new Error('no navigator.gpu');
  const adapter = await navigator.gpu.requestAdapter(featureLevel ? ({ featureLevel } as GPURequestAdapterOptions) : undefined);
  if (!adapter) throw new Error(`no WebGPU adapter${featureLevel ? ` (featureLevel ${featureLevel})` : ''}`);
  const requiredLimits: Record<string, number> = {};
  for (const name in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  return GpuContext.fromDevice(await adapter.requestDevice({ requiredLimits, requiredFeatures }));
}

async function main(): Promise<void> {
  try {
    const specs = (await (await fetch('/specs.json')).json()) as KernelSpec[];
    const ctx = await device(new URL(location.href).searchParams.get('featureLevel'));
    const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    const rows: Array<{ label: string; ms: number }> = [];
    for (const spec of specs) {
      const t = performance.now();
      await compileKernels(ctx, [spec]);
      rows.push({ label: spec.label, ms: performance.now() - t });
    }
    window.compileTimes = { rows, adapter: info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : '' };
  } catch (e) {
    window.compileTimes = { error: e instanceof Error ? e.message : String(e) };
  }
}

void main();
