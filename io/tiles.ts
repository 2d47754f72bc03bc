// The conv tile tuner's cache file (Node only): `npm run tune` writes the best tile per conv class
// for an adapter and conv2d.wgsl revision; the CLI and the benchmarks read it *explicitly* and pass
// the table to `ctx.setConvTiling()`. The library never reads it on its own, so a test or an app
// gets the built-in defaults unless it asks. Location: $MASKGPU_CACHE_DIR/tiles.json, else
// $XDG_CACHE_HOME/maskgpu/tiles.json, else ~/.cache/maskgpu/tiles.json; delete it to forget.

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { AdapterReport } from '../engine/device.ts';
import type { GpuContext } from '../engine/gpu.ts';
import { checkConvTile, convTilingKey, type ConvTiling } from '../engine/kernels/convTiling.ts';

export interface ConvTilingCacheEntry {
  tiling: ConvTiling;
  adapter: string;
  measured: string;
  /** What the tuner saw per class: GFLOP/s of the chosen tile and of the defaults. */
  evidence?: Record<string, unknown>;
}

interface CacheFile {
  version: 1;
  adapters: Record<string, ConvTilingCacheEntry>;
}

/** maskgpu's cache folder: $MASKGPU_CACHE_DIR, else $XDG_CACHE_HOME/maskgpu, else ~/.cache/maskgpu. */
export function maskgpuCacheDir(env: Record<string, string | undefined> = process.env): string {
  return env.MASKGPU_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'maskgpu');
}

export function convTilingCacheFile(env: Record<string, string | undefined> = process.env): string {
  return join(maskgpuCacheDir(env), 'tiles.json');
}

function readCacheFile(file: string): CacheFile {
  if (!existsSync(file)) return { version: 1, adapters: {} };
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as CacheFile;
  if (parsed?.version !== 1 || typeof parsed.adapters !== 'object' || parsed.adapters === null) throw new Error('not a version 1 maskgpu tile cache');
  return parsed;
}

/** The entry for this adapter and kernel revision, if `file` has a usable one (a malformed file is reported and ignored). */
export function readConvTilingCache(report: AdapterReport, file = convTilingCacheFile()): ConvTilingCacheEntry | undefined {
  try {
    const entry = readCacheFile(file).adapters[convTilingKey(report)];
    if (entry) for (const tile of Object.values(entry.tiling)) checkConvTile(tile);
    return entry;
  } catch (e) {
    console.warn(`maskgpu: ignoring the conv tile cache ${file} (${(e as Error).message}); rerun \`npm run tune\` to rebuild it`);
    return undefined;
  }
}

/** Stores `entry` for this adapter (other adapters' entries are kept), atomically; returns the file. */
export function writeConvTilingCache(report: AdapterReport, entry: ConvTilingCacheEntry, file = convTilingCacheFile()): string {
  let data: CacheFile;
  try {
    data = readCacheFile(file);
  } catch {
    data = { version: 1, adapters: {} };
  }
  data.adapters[convTilingKey(report)] = entry;
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n');
  renameSync(tmp, file);
  return file;
}

/** Applies the cached table for ctx's adapter, if any; returns the file it came from. */
export function useCachedConvTiling(ctx: GpuContext, file = convTilingCacheFile()): string | undefined {
  const entry = readConvTilingCache(ctx.report, file);
  if (!entry) return undefined;
  ctx.setConvTiling(entry.tiling);
  return file;
}
