// The compiled-kernel record (Node only): which tuned kernels the driver has compiled for this
// adapter, so that a new process starts on the tuned tier (engine/tiers.ts) instead of quick
// stand-ins. The driver keeps the compiled code in its own cache (Mesa: $XDG_CACHE_HOME/
// mesa_shader_cache_db); this file only lists the kernels' keys. Both live under the same cache
// folder by default, so an empty $XDG_CACHE_HOME empties both; delete kernels.json with the
// driver's cache (or on its own: the next run then takes stand-ins and compiles again).
// Location: $MASKGPU_CACHE_DIR/kernels.json, else $XDG_CACHE_HOME/maskgpu/kernels.json, else
// ~/.cache/maskgpu/kernels.json. The library never reads it on its own: the CLI calls
// `useCompiledKernels(ctx)`, and `startBackgroundCompile` hands the wanted kernels to a detached
// `maskgpu compile-kernels JOB` process that compiles them and adds their keys here.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AdapterReport } from '../engine/device.ts';
import type { GpuContext, KernelSpec } from '../engine/gpu.ts';
import { compileKernels } from '../engine/tiers.ts';
import { maskgpuCacheDir } from './tiles.ts';

interface RecordFile {
  version: 1;
  adapters: Record<string, { keys: string[] }>;
}

/** A background compile's input: the adapter it is for and the kernels. */
export interface CompileJob {
  version: 1;
  adapter: string;
  kernels: Array<{ key: string; spec: KernelSpec }>;
}

export function kernelCacheFile(env: Record<string, string | undefined> = process.env): string {
  return join(maskgpuCacheDir(env), 'kernels.json');
}

/** The record's key for an adapter: its name and driver (a new driver version compiles anew). */
export function adapterKey(report: AdapterReport): string {
  return [report.vendor, report.architecture, report.device, report.description, report.runtime].join(' | ');
}

function readRecord(file: string): RecordFile {
  if (!existsSync(file)) return { version: 1, adapters: {} };
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as RecordFile;
  if (parsed?.version !== 1 || typeof parsed.adapters !== 'object' || parsed.adapters === null) throw new Error('not a version 1 maskgpu kernel record');
  return parsed;
}

/** Keys recorded for this adapter ([] when none, or when the file is unreadable: that is reported, not fatal). */
export function readCompiledKernels(report: AdapterReport, file = kernelCacheFile()): string[] {
  try {
    const keys = readRecord(file).adapters[adapterKey(report)]?.keys ?? [];
    return keys.filter((k) => typeof k === 'string');
  } catch (e) {
    console.warn(`maskgpu: ignoring the kernel record ${file} (${(e as Error).message}); delete it to start afresh`);
    return [];
  }
}

/** Tells `ctx` which kernels earlier runs compiled on this adapter; returns how many. */
export function useCompiledKernels(ctx: GpuContext, file = kernelCacheFile()): number {
  const keys = readCompiledKernels(ctx.report, file);
  ctx.addCompiledKernels(keys);
  return keys.length;
}

/** Adds `keys` to the record for this adapter (atomically; other adapters are kept); returns how many were new. */
export function recordCompiledKernels(report: AdapterReport, keys: Iterable<string>, file = kernelCacheFile()): number {
  let data: RecordFile;
  try {
    data = readRecord(file);
  } catch {
    data = { version: 1, adapters: {} };
  }
  const id = adapterKey(report);
  const have = new Set(data.adapters[id]?.keys ?? []);
  const before = have.size;
  for (const k of keys) have.add(k);
  if (have.size === before) return 0;
  data.adapters[id] = { keys: [...have].sort() };
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(data, null, 1) + '\n');
  renameSync(tmp, file);
  return have.size - before;
}

/**
 * Writes the kernels `ctx` is waiting for into a job file and starts a detached
 * `maskgpu compile-kernels JOB` (this process can exit at once); its output goes to
 * compile-kernels.log beside the record. Returns undefined when nothing is wanted.
 */
export function startBackgroundCompile(
  ctx: GpuContext,
  options: { cli?: string; file?: string } = {},
): { pid: number; kernels: number; log: string; already?: boolean } | undefined {
  const kernels = ctx.wantedKernels();
  if (!kernels.length) return undefined;
  const dir = dirname(options.file ?? kernelCacheFile());
  mkdirSync(dir, { recursive: true });
  const log = join(dir, 'compile-kernels.log');
  // One compile at a time per cache folder: another one under way compiles what the runs before
  // wanted (a run after it starts one for whatever is still missing).
  const lock = join(dir, 'compile-kernels.pid');
  const holder = existsSync(lock) ? Number(readFileSync(lock, 'utf8')) : NaN;
  if (Number.isInteger(holder) && holder > 0 && alive(holder)) return { pid: holder, kernels: kernels.length, log, already: true };
  const job = join(dir, `compile-job-${process.pid}-${Date.now()}.json`);
  writeFileSync(job, JSON.stringify({ version: 1, adapter: adapterKey(ctx.report), kernels } satisfies CompileJob));
  const fd = openSync(log, 'a');
  try {
    const cli = options.cli ?? process.argv[1];
    const args = [...process.execArgv, cli, 'compile-kernels', job, ...(options.file ? ['--record', options.file] : [])];
    const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd] });
    child.unref();
    if (child.pid) writeFileSync(lock, String(child.pid));
    return { pid: child.pid ?? -1, kernels: kernels.length, log };
  } finally {
    closeSync(fd);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs a job file on `ctx` (which must be the job's adapter), records the keys and deletes the job. */
export async function runCompileJob(ctx: GpuContext, job: string, file = kernelCacheFile()): Promise<{ kernels: number; ms: number }> {
  const parsed = JSON.parse(readFileSync(job, 'utf8')) as CompileJob;
  if (parsed?.version !== 1 || !Array.isArray(parsed.kernels)) throw new Error(`${job} is not a maskgpu compile job`);
  if (parsed.adapter !== adapterKey(ctx.report)) throw new Error(`${job} was written for the adapter '${parsed.adapter}', this one is '${adapterKey(ctx.report)}'`);
  const started = performance.now();
  await compileKernels(
    ctx,
    parsed.kernels.map((k) => k.spec),
  );
  recordCompiledKernels(ctx.report, parsed.kernels.map((k) => k.key), file);
  rmSync(job, { force: true });
  const lock = join(dirname(job), 'compile-kernels.pid');
  if (existsSync(lock) && Number(readFileSync(lock, 'utf8')) === process.pid) rmSync(lock, { force: true });
  return { kernels: parsed.kernels.length, ms: performance.now() - started };
}
