// Which register tile and workgroup shape conv2d uses, per class of convolution and per adapter.
// The best tile differs between adapters (a CPU adapter wants uniform weight loads and large
// register tiles; a GPU wants enough invocations per workgroup) and between a 7x7 stem over 3
// channels, a 1x1 over 2048 and a 3x3 on a 25x34 map, so `npm run tune` (bench/tune.ts) measures
// the candidates on ResNet-50 shapes and caches the best per class for the adapter. Lookup order:
// a tile given in the conv's spec, a table passed to setConvTiling() (how a browser app supplies
// one), in Node the cache file for this adapter and kernel revision, else the built-in defaults.
// Any tile gives bit-identical results (each output sums its K terms in the same order), so the
// choice moves speed only.

import source from '../../shaders/conv2d.wgsl';
import type { AdapterReport } from '../device.ts';

export interface ConvTile {
  /** Output channels per invocation: 1, 2 or a multiple of 4. */
  tm: number;
  /** Output pixels per invocation. */
  tn: number;
  /** Invocations per workgroup along pixels. */
  wgX: number;
  /** Invocations per workgroup along channels (1 makes the weight loads uniform). */
  wgY: number;
}

/**
 * tiny: fewer than 256 output pixels in the batch (the coarsest FPN levels, unit tests): a small
 * tile wastes less on clamped rows and columns and compiles in a fraction of the time.
 * stem: fewer than 8 input channels (the 7x7 over RGB): the channel loop is too short to hide the
 * per-tap work. pointwise: 1x1 kernels; spatial: larger kernels. small: fewer than 4096 output
 * pixels (ResNet stages 3 and 4 at 800x1088, the RPN on the coarse levels), where a big tile leaves
 * workgroups idle on a GPU.
 */
export const CONV_CLASSES = ['tiny', 'stem', 'pointwise-large', 'pointwise-small', 'spatial-large', 'spatial-small'] as const;
export type ConvClass = (typeof CONV_CLASSES)[number];
export type ConvTiling = Partial<Record<ConvClass, ConvTile>>;

export function convClass(cin: number, kh: number, kw: number, outputPixels: number): ConvClass {
  if (outputPixels < 256) return 'tiny';
  if (cin < 8) return 'stem';
  const size = outputPixels < 4096 ? 'small' : 'large';
  return kh === 1 && kw === 1 ? `pointwise-${size}` : `spatial-${size}`;
}

/**
 * Built in: on Mesa lavapipe `npm run tune` finds 16x8 per invocation best for every class but
 * tiny (bench/NOTES.md); of its two workgroup shapes (8x1 and 32x1, within noise of each other)
 * the default takes 32x1 so that a GPU without a tuned table still gets 32-invocation workgroups.
 */
const LARGE_TILE: ConvTile = { tm: 16, tn: 8, wgX: 32, wgY: 1 };
export const DEFAULT_CONV_TILING: Record<ConvClass, ConvTile> = {
  tiny: { tm: 4, tn: 4, wgX: 32, wgY: 1 },
  stem: LARGE_TILE,
  'pointwise-large': LARGE_TILE,
  'pointwise-small': LARGE_TILE,
  'spatial-large': LARGE_TILE,
  'spatial-small': LARGE_TILE,
};

export function tileName(t: ConvTile): string {
  return `${t.tm}x${t.tn}/wg${t.wgX}x${t.wgY}`;
}

/** Throws unless the kernel can run `tile` (TM must split evenly into vec4 weight loads). */
export function checkConvTile(tile: ConvTile, maxInvocations = 256): void {
  const { tm, tn, wgX, wgY } = tile;
  const ok =
    [tm, tn, wgX, wgY].every((v) => Number.isInteger(v) && v >= 1) && (tm === 1 || tm === 2 || tm % 4 === 0) && tm <= 64 && tn <= 64 && wgX * wgY <= maxInvocations;
  if (!ok) {
    throw new Error(
      `conv tile ${JSON.stringify(tile)} is not usable: tm must be 1, 2 or a multiple of 4 (at most 64), tn at most 64, and wgX*wgY at most ${maxInvocations} invocations`,
    );
  }
}

let explicitTiling: ConvTiling | undefined;

/** Makes every conv (without a tile of its own) use `table`; undefined returns to cache/defaults. */
export function setConvTiling(table: ConvTiling | undefined): void {
  if (table) {
    for (const [cls, tile] of Object.entries(table)) {
      if (!(CONV_CLASSES as readonly string[]).includes(cls)) throw new Error(`unknown conv class '${cls}' (known: ${CONV_CLASSES.join(', ')})`);
      checkConvTile(tile);
    }
  }
  explicitTiling = table ? { ...table } : undefined;
}

/** The complete table convs use on this adapter: setConvTiling's, else the cached one, else defaults. */
export function getConvTiling(report?: AdapterReport): Record<ConvClass, ConvTile> {
  const chosen = explicitTiling ?? (report ? readConvTilingCache(report)?.tiling : undefined) ?? {};
  return { ...DEFAULT_CONV_TILING, ...chosen };
}

/** Tuned tiles belong to one adapter and one revision of the kernel (a changed shader re-tunes). */
export function convTilingKey(report: AdapterReport): string {
  return [report.vendor, report.architecture, report.device, report.description, report.runtime, `conv2d.wgsl ${kernelRevision()}`].join(' | ');
}

function kernelRevision(): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < source.length; i++) h = Math.imul(h ^ source.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16);
}

// ---- the Node cache file ---------------------------------------------------------------------

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

// The few Node calls used, typed here so the browser build's declarations need no Node types.
interface NodeFs {
  existsSync(path: string): boolean;
  mkdirSync(path: string, options: { recursive: boolean }): unknown;
  readFileSync(path: string, encoding: 'utf8'): string;
  writeFileSync(path: string, data: string): void;
  statSync(path: string, options: { throwIfNoEntry: false }): { mtimeMs: number; size: number } | undefined;
}
interface NodeOs {
  homedir(): string;
}
interface NodePath {
  join(...parts: string[]): string;
  dirname(path: string): string;
}

/** node:fs & co. when running under Node (synchronously; no import, so browser bundles stay clean). */
function nodeModules(): { fs: NodeFs; os: NodeOs; path: NodePath; env: Record<string, string | undefined> } | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown; env: Record<string, string | undefined> } }).process;
  if (!proc?.getBuiltinModule) return undefined;
  return { fs: proc.getBuiltinModule('node:fs') as NodeFs, os: proc.getBuiltinModule('node:os') as NodeOs, path: proc.getBuiltinModule('node:path') as NodePath, env: proc.env };
}

/** $MASKGPU_CACHE_DIR/tiles.json, else ~/.cache/maskgpu/tiles.json; undefined outside Node. */
export function convTilingCacheFile(): string | undefined {
  const node = nodeModules();
  if (!node) return undefined;
  const dir = node.env.MASKGPU_CACHE_DIR || node.path.join(node.env.XDG_CACHE_HOME || node.path.join(node.os.homedir(), '.cache'), 'maskgpu');
  return node.path.join(dir, 'tiles.json');
}

function readCacheFile(file: string): CacheFile {
  const fs = nodeModules()!.fs;
  if (!fs.existsSync(file)) return { version: 1, adapters: {} };
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as CacheFile;
  if (parsed?.version !== 1 || typeof parsed.adapters !== 'object') throw new Error('not a version 1 maskgpu tile cache');
  return parsed;
}

// Parsed entries by file version (path, mtime, size) and adapter: every conv asks, the file is read once.
const cacheReads = new Map<string, ConvTilingCacheEntry | undefined>();

/** The cached entry for this adapter and kernel revision, if the cache file has one. */
export function readConvTilingCache(report: AdapterReport): ConvTilingCacheEntry | undefined {
  const node = nodeModules();
  const file = convTilingCacheFile();
  if (!node || !file) return undefined;
  const stat = node.fs.statSync(file, { throwIfNoEntry: false });
  if (!stat) return undefined;
  const key = `${file}|${stat.mtimeMs}|${stat.size}|${convTilingKey(report)}`;
  if (cacheReads.has(key)) return cacheReads.get(key);
  let entry: ConvTilingCacheEntry | undefined;
  try {
    entry = readCacheFile(file).adapters[convTilingKey(report)];
    if (entry) for (const tile of Object.values(entry.tiling)) checkConvTile(tile);
  } catch (e) {
    console.warn(`maskgpu: ignoring the conv tile cache ${file} (${(e as Error).message}); rerun \`npm run tune\` to rebuild it`);
    entry = undefined;
  }
  cacheReads.set(key, entry);
  return entry;
}

/** Stores `entry` for this adapter (other adapters' entries are kept); returns the file. */
export function writeConvTilingCache(report: AdapterReport, entry: ConvTilingCacheEntry): string {
  const node = nodeModules();
  const file = convTilingCacheFile();
  if (!node || !file) throw new Error('the conv tile cache file needs Node (>= 20.16); in a browser pass the table to setConvTiling()');
  let data: CacheFile;
  try {
    data = readCacheFile(file);
  } catch {
    data = { version: 1, adapters: {} };
  }
  data.adapters[convTilingKey(report)] = entry;
  node.fs.mkdirSync(node.path.dirname(file), { recursive: true });
  node.fs.writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}
