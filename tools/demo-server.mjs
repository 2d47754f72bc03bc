#!/usr/bin/env node
// The demo: builds the library bundle (dist/maskgpu.js) and the page's script (demo/main.ts ->
// dist/demo/main.js, which imports the library bundle rather than a second copy of the engine),
// then serves the page, both bundles and models/ on http://localhost:PORT (localhost is a secure
// context, as WebGPU and the Cache API need).
//
//   npm run demo [-- --port 8080]        (--port 0 picks a free port)

import { build } from 'esbuild';
import { readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
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

/** The file a request path names, or undefined: fixed files, and anything under models/. */
function resolvePath(pathname) {
  if (FIXED[pathname]) return FIXED[pathname];
  if (!pathname.startsWith('/models/')) return undefined;
  const file = normalize(join(modelsDir, decodeURIComponent(pathname.slice('/models/'.length))));
  return file.startsWith(modelsDir + sep) ? file : undefined;
}

/**
 * Serves the demo on 127.0.0.1 (`port` 0: a free one). With `build`, builds first. Files are read
 * per request, so a rebuild shows up on reload. Returns the page's URL and a close function.
 */
export async function startDemoServer({ port = 8080, build: rebuild = true } = {}) {
  if (rebuild) await buildDemo();
  const server = createServer(async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const file = resolvePath(new URL(req.url ?? '/', 'http://localhost').pathname);
    if (!file || !(await stat(file).then((s) => s.isFile(), () => false))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const body = await readFile(file);
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': body.length,
      'cache-control': 'no-cache',
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

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log('usage: npm run demo [-- --port N]   builds dist/maskgpu.js and the page, then serves them on http://localhost:N/ (default 8080, 0 = any free port)');
    process.exit(0);
  }
  const at = args.indexOf('--port');
  const unknown = args.filter((_, i) => at < 0 || (i !== at && i !== at + 1));
  if (unknown.length) {
    console.error(`unknown argument ${unknown[0]}; usage: npm run demo [-- --port N]`);
    process.exit(2);
  }
  const port = at >= 0 ? Number(args[at + 1]) : 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port needs a port number 0-65535, got ${args[at + 1]}`);
    process.exit(2);
  }
  try {
    const { url } = await startDemoServer({ port });
    console.log(`maskgpu demo: ${url}  (Ctrl-C to stop)`);
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
