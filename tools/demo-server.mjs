#!/usr/bin/env node
// The demo: builds the library bundle (dist/maskgpu.js) and the page's script (demo/main.ts ->
// dist/demo/main.js, which imports the library bundle rather than a second copy of the engine),
// then serves the page, both bundles and models/ on http://localhost:PORT (localhost is a secure
// context, as WebGPU and the Cache API need). Weights files are served with
// Access-Control-Allow-Origin: *, so a page on another origin can load them with ?weights=URL.
//
//   npm run demo [-- [--port 8080] [--weights my-model.safetensors]]
//     (--port 0 picks a free port; --weights also serves that file, as /weights/<its name>, and
//     prints the page's address that loads it)

import { build } from 'esbuild';
import { readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { basename, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundle } from './build.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const modelsDir = join(root, 'models');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.json': 'application/json',
  '.md': 'text/markdown; charset=utf-8',
  '.safetensors': 'application/octet-stream',
};

/**
 * The page's imports of the engine resolve to the library bundle, served next to the page, so
 * the demo runs exactly what `npm run build` ships; any other engine import is a mistake.
 */
const useLibraryBundle = {
  name: 'maskgpu-library-bundle',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/(index\.ts$|(engine|prune|weights-loader|eval|io)\/)/ }, (args) => {
      if (args.path === '../index.ts') return { path: './maskgpu.js', external: true };
      return { errors: [{ text: `${args.importer} imports ${args.path}: the demo must use the library only through '../index.ts' (the bundle's entry)` }] };
    });
  },
};

/** Builds dist/maskgpu.js and dist/demo/main.js; returns their paths. */
export async function buildDemo() {
  const library = await bundle();
  const page = join(root, 'dist', 'demo', 'main.js');
  await build({
    entryPoints: [join(root, 'demo', 'main.ts')],
    outfile: page,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
    plugins: [useLibraryBundle],
    logLevel: 'warning',
  });
  return { library, page };
}

const FIXED = {
  '/': join(root, 'demo', 'index.html'),
  '/index.html': join(root, 'demo', 'index.html'),
  '/style.css': join(root, 'demo', 'style.css'),
  '/main.js': join(root, 'dist', 'demo', 'main.js'),
  '/main.js.map': join(root, 'dist', 'demo', 'main.js.map'),
  '/maskgpu.js': join(root, 'dist', 'maskgpu.js'),
  '/maskgpu.js.map': join(root, 'dist', 'maskgpu.js.map'),
};

/** The file a request path names, or undefined: fixed files, `extra` ones, and anything under models/. */
function resolvePath(pathname, extra) {
  if (FIXED[pathname]) return FIXED[pathname];
  if (Object.hasOwn(extra, pathname)) return extra[pathname];
  if (!pathname.startsWith('/models/')) return undefined;
  const file = normalize(join(modelsDir, decodeURIComponent(pathname.slice('/models/'.length))));
  return file.startsWith(modelsDir + sep) ? file : undefined;
}

/**
 * Serves the demo on 127.0.0.1 (`port` 0: a free one). With `build`, builds first. `files` serves
 * more files: { '/weights/x.safetensors': '/path/to/x.safetensors' } (request path -> file). Files
 * are read per request, so a rebuild shows up on reload. Returns the page's URL and a close function.
 */
export async function startDemoServer({ port = 8080, build: rebuild = true, files = {} } = {}) {
  const extra = {};
  for (const [path, file] of Object.entries(files)) {
    if (!path.startsWith('/') || FIXED[path]) throw new Error(`demo server: cannot serve ${file} as ${path}: give a path starting with / that is not one of the page's own`);
    extra[path] = resolve(file);
  }
  if (rebuild) await buildDemo();
  const server = createServer(async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const file = resolvePath(new URL(req.url ?? '/', 'http://localhost').pathname, extra);
    if (!file || !(await stat(file).then((s) => s.isFile(), () => false))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const body = await readFile(file);
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': body.length,
      'cache-control': 'no-cache',
      // Weights may be loaded by a page on another origin (?weights=URL); nothing here is private.
      ...(extname(file) === '.safetensors' ? { 'access-control-allow-origin': '*' } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise((resolve, reject) => {
    server.once('error', (e) => {
      const hint = e.code === 'EADDRINUSE' ? `port ${port} is in use: pass --port with another one (0 picks a free port)` : e.message;
      reject(new Error(`the demo server could not listen on 127.0.0.1:${port}: ${hint}`));
    });
    server.listen(port, '127.0.0.1', resolve);
  });
  const url = `http://localhost:${server.address().port}/`;
  return { url, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const USAGE = 'usage: npm run demo [-- [--port N] [--weights FILE.safetensors]]   builds dist/maskgpu.js and the page, then serves them on http://localhost:N/ (default 8080, 0 = any free port); --weights also serves FILE and prints the address that loads it';

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    process.exit(0);
  }
  const values = {};
  for (let i = 0; i < args.length; i += 2) {
    if ((args[i] !== '--port' && args[i] !== '--weights') || args[i + 1] === undefined) {
      console.error(args[i] === '--port' || args[i] === '--weights' ? `${args[i]} needs a value; ${USAGE}` : `unknown argument ${args[i]}; ${USAGE}`);
      process.exit(2);
    }
    values[args[i]] = args[i + 1];
  }
  const port = values['--port'] !== undefined ? Number(values['--port']) : 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port needs a port number 0-65535, got ${values['--port']}`);
    process.exit(2);
  }
  const weights = values['--weights'];
  if (weights !== undefined && !(await stat(weights).then((s) => s.isFile(), () => false))) {
    console.error(`--weights ${weights}: no such file`);
    process.exit(2);
  }
  const served = weights !== undefined ? `/weights/${basename(weights)}` : undefined;
  try {
    const { url } = await startDemoServer({ port, files: served ? { [served]: weights } : {} });
    console.log(`maskgpu demo: ${url}  (Ctrl-C to stop)`);
    if (served) console.log(`  with ${weights}: ${url}?weights=${encodeURIComponent(served.slice(1)).replace(/%2F/g, '/')}`);
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
