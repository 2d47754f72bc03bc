// Browser download of safetensors weights: fetchSafetensors streams the body with progress
// callbacks, checks the length against Content-Length, parses the bytes (weights-loader/
// safetensors.ts) and optionally keeps the file in the Cache API, where a damaged copy is
// deleted and downloaded again. Uses only fetch and CacheStorage: browser-safe, and works in Node
// (there without a cache).

import { parseSafetensors, SafetensorsError, type ParseOptions, type SafetensorsFile } from './safetensors.ts';

export interface FetchOptions extends ParseOptions {
  /** `source` says where the bytes come from: 'cache' when `cache` found a good copy. */
  onProgress?: (loadedBytes: number, totalBytes: number | undefined, source: 'network' | 'cache') => void;
  signal?: AbortSignal;
  fetchImpl?: typeof fetch;
  /**
   * Keep the file in the browser's Cache API: true (the cache DEFAULT_WEIGHTS_CACHE) or a cache
   * name. A cached copy is used only if it parses; a damaged one is deleted and the file is
   * downloaded again. Only files that parsed are stored. The cache is keyed by URL and never
   * revalidated: to ship new weights under the same URL, use a new cache name (e.g. with a
   * version). Without a Cache API (Node, an insecure context) the file is always downloaded.
   */
  cache?: boolean | string;
}

export const DEFAULT_WEIGHTS_CACHE = 'maskgpu-weights';

/**
 * Downloads and parses a safetensors file, streaming the body so progress can be shown:
 * onProgress(0, total) first, then after every chunk. `total` is the Content-Length, or undefined
 * when the server sends none or compresses the body (its length then counts compressed bytes).
 * With `cache`, a good cached copy is returned without a download (progress (0, n) then (n, n)).
 */
export async function fetchSafetensors(url: string, options: FetchOptions = {}): Promise<SafetensorsFile> {
  const cache = options.cache ? await openWeightsCache(options.cache === true ? DEFAULT_WEIGHTS_CACHE : options.cache) : undefined;
  if (cache) {
    const cached = await readCachedWeights(cache, url, options);
    if (cached) return cached;
  }
  const bytes = await downloadBytes(url, options);
  let file: SafetensorsFile;
  try {
    file = parseSafetensors(bytes, options);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new SafetensorsError(`${url}: ${e.message}`, e.key, e.offset);
    throw e;
  }
  if (cache) {
    const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) };
    // A full quota must not fail a load that succeeded; the next load just downloads again.
    await cache.put(url, new Response(bytes, { headers })).catch((e: Error) => console.warn(`maskgpu: could not cache ${url} (${e.message}); it will be downloaded again next time`));
  }
  return file;
}

/** The named cache, or undefined where the Cache API is missing or refused (opaque origins). */
async function openWeightsCache(name: string): Promise<Cache | undefined> {
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  if (!storage) return undefined;
  try {
    return await storage.open(name);
  } catch (e) {
    console.warn(`maskgpu: the Cache API refused to open '${name}' (${(e as Error).message}); downloading without caching`);
    return undefined;
  }
}

async function readCachedWeights(cache: Cache, url: string, options: FetchOptions): Promise<SafetensorsFile | undefined> {
  const hit = await cache.match(url);
  if (!hit) return undefined;
  const bytes = new Uint8Array(await hit.arrayBuffer());
  options.onProgress?.(0, bytes.length, 'cache');
  try {
    const file = parseSafetensors(bytes, options);
    options.onProgress?.(bytes.length, bytes.length, 'cache');
    return file;
  } catch (e) {
    if (!(e instanceof SafetensorsError)) throw e;
    await cache.delete(url);
    console.warn(`maskgpu: the cached copy of ${url} is damaged (${e.message}); deleted it, downloading again`);
    return undefined;
  }
}

async function downloadBytes(url: string, options: FetchOptions): Promise<Uint8Array<ArrayBuffer>> {
  const fetchImpl = options.fetchImpl ?? globalThis.fetch;
  const response = await fetchImpl(url, { signal: options.signal });
  if (!response.ok) {
    throw new SafetensorsError(`could not download weights from ${url}: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
  }
  const lengthHeader = response.headers.get('content-length');
  const declared = lengthHeader !== null && /^\d+$/.test(lengthHeader.trim()) ? Number(lengthHeader) : undefined;
  // With content-encoding the length counts compressed bytes, not the ones the reader yields.
  const total = response.headers.get('content-encoding') ? undefined : declared;
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let loaded = 0;
  options.onProgress?.(0, total, 'network');
  if (response.body) {
    const reader = response.body.getReader();
    try {
      for (;;) {
        options.signal?.throwIfAborted();
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        loaded += value.length;
        options.onProgress?.(loaded, total, 'network');
      }
    } finally {
      reader.releaseLock();
    }
  } else {
    const all = new Uint8Array(await response.arrayBuffer());
    chunks.push(all);
    loaded = all.length;
    options.onProgress?.(loaded, total, 'network');
  }
  options.signal?.throwIfAborted();
  if (total !== undefined && loaded !== total) {
    throw new SafetensorsError(`download of ${url} ended after ${loaded} of ${total} bytes: the connection was cut; try again`);
  }
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(loaded);
  let pos = 0;
  for (const c of chunks) {
    bytes.set(c, pos);
    pos += c.length;
  }
  return bytes;
}
