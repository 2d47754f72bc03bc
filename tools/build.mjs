// Builds what the npm package ships (`npm run build`; `npm pack` and `npm publish` run it through
// `prepack`, with --pack: no source maps):
//
//   dist/maskgpu.js   the library (index.ts) for browsers and Node: an ES module with the WGSL inlined
//                     (esbuild's `text` loader) and no Node built-ins; `import ... from 'maskgpu'`
//   dist/node.js      the Node helpers (io/ and weights-loader/node.ts); `import ... from 'maskgpu/node'`
//   dist/cli.js       the command line (bin/cli.ts), run by bin/maskgpu.mjs in an installed package
//   dist/**/*.d.ts    type declarations (tsc): dist/index.d.ts for 'maskgpu', dist/node.d.ts for 'maskgpu/node'
//
// dist/node.js and dist/cli.js are bundled for Node with every npm package left external (the
// runtime dependencies), and they import the library's modules from ./maskgpu.js (and the CLI the
// Node helpers from ./node.js) instead of carrying copies: one engine, one GpuContext class, one
// CocoFormatError, whichever entry a program imports them through. Only what a shared bundle does
// not export (a few pure helpers) is bundled into them again.
import { build } from 'esbuild';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');

const COMMON = {
  absWorkingDir: root,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  loader: { '.wgsl': 'text' },
  logLevel: 'warning',
};

/** The library entry (index.ts) for the browser; returns esbuild's result (with its metafile). */
async function buildLibrary(outfile, { minify = false, sourcemap = true } = {}) {
  return build({ ...COMMON, entryPoints: [join(root, 'index.ts')], outfile, platform: 'browser', sourcemap, minify, metafile: true });
}

/** Bundles index.ts to `outfile` (default dist/maskgpu.js) for the browser; returns the path. */
export async function bundle(outfile = join(dist, 'maskgpu.js'), { minify = false, sourcemap = true } = {}) {
  await buildLibrary(outfile, { minify, sourcemap });
  return outfile;
}

/** The entry of dist/node.js (and dist/node.d.ts, with .js for .ts). */
const NODE_ENTRY = `export * from './io/index.ts';\nexport { readSafetensorsFile, writeFileAtomic } from './weights-loader/node.ts';\n`;

const exportsCache = new Map();
/** The value exports of one module (esbuild's metafile, no bundling). */
async function moduleExports(path) {
  if (!exportsCache.has(path)) {
    const r = await build({ ...COMMON, bundle: false, entryPoints: [path], write: false, metafile: true, outdir: dist, logLevel: 'silent' });
    exportsCache.set(path, Object.values(r.metafile.outputs)[0].exports);
  }
  return exportsCache.get(path);
}

/**
 * A module of the source tree that a shared bundle contains is imported from that bundle (as
 * `specifier`, relative to the output) for every name the bundle exports; names it does not export
 * come from the module itself, bundled as usual.
 * @param {{ specifier: string, inputs: Set<string>, exports: Set<string> }[]} shared
 */
function importFromSharedBundles(shared) {
  const EXTERNAL = 'maskgpu-shared-bundle:';
  return {
    name: 'maskgpu-shared-bundles',
    setup(b) {
      b.onResolve({ filter: /^\.\.?\/.*\.ts$/ }, (args) => {
        if (args.namespace !== 'file') return undefined;
        const path = resolve(args.resolveDir, args.path);
        return shared.some((s) => s.inputs.has(path)) ? { path, namespace: 'maskgpu-shared' } : undefined;
      });
      b.onResolve({ filter: new RegExp(`^${EXTERNAL}`) }, (args) => ({ path: args.path.slice(EXTERNAL.length), external: true }));
      // The module itself, for the names no shared bundle exports: only what they need is kept.
      b.onResolve({ filter: /^\// }, (args) => (args.namespace === 'maskgpu-shared' ? { path: args.path, sideEffects: false } : undefined));
      b.onLoad({ filter: /.*/, namespace: 'maskgpu-shared' }, async (args) => {
        const from = new Map();
        const own = [];
        for (const name of await moduleExports(args.path)) {
          const s = shared.find((s) => s.inputs.has(args.path) && s.exports.has(name));
          if (s) from.set(s.specifier, [...(from.get(s.specifier) ?? []), name]);
          else own.push(name);
        }
        const lines = [...from].map(([specifier, names]) => `export { ${names.join(', ')} } from ${JSON.stringify(EXTERNAL + specifier)};`);
        // An absolute path: the module itself is bundled (see the onResolve above).
        if (own.length) lines.push(`export { ${own.join(', ')} } from ${JSON.stringify(args.path)};`);
        return { contents: lines.join('\n'), loader: 'js', resolveDir: dirname(args.path) };
      });
    },
  };
}

/** What other bundles may import from this one: its source files and its exports. */
function sharedFrom(result, specifier) {
  const [output] = Object.values(result.metafile.outputs).filter((o) => o.entryPoint !== undefined || o.exports.length);
  return { specifier, inputs: new Set(Object.keys(result.metafile.inputs).map((p) => resolve(root, p))), exports: new Set(output.exports) };
}

/** Builds dist/maskgpu.js, dist/node.js and dist/cli.js; returns their paths. */
export async function bundleAll({ minify = false, sourcemap = true } = {}) {
  const library = await buildLibrary(join(dist, 'maskgpu.js'), { minify, sourcemap });
  const forNode = { ...COMMON, platform: 'node', packages: 'external', sourcemap, minify, metafile: true };
  const shared = [sharedFrom(library, './maskgpu.js')];
  const node = await build({
    ...forNode,
    stdin: { contents: NODE_ENTRY, resolveDir: root, sourcefile: 'maskgpu-node-entry.ts', loader: 'ts' },
    outfile: join(dist, 'node.js'),
    plugins: [importFromSharedBundles(shared)],
  });
  shared.push(sharedFrom(node, './node.js'));
  await build({ ...forNode, entryPoints: [join(root, 'bin', 'cli.ts')], outfile: join(dist, 'cli.js'), plugins: [importFromSharedBundles(shared)] });
  const outputs = ['maskgpu.js', 'node.js', 'cli.js'].map((f) => join(dist, f));
  if (!sourcemap) for (const f of outputs) rmSync(`${f}.map`, { force: true }); // no stale maps beside them
  return outputs;
}

function dtsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return p === join(dist, 'demo') ? [] : dtsFiles(p);
    return e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** The WebGPU types (GPUDevice, GPUBuffer...) the declarations use: a dependency, so they resolve. */
const WEBGPU_TYPES = '/// <reference types="@webgpu/types" />\n';

/**
 * dist/**\/*.d.ts from index.ts (tsconfig.build.json), io/index.ts and weights-loader/node.ts, and
 * dist/node.d.ts. Relative imports name .js files, as the declarations sit beside no .ts file.
 */
export async function declarations() {
  const { default: ts } = await import('typescript');
  for (const f of (() => { try { return dtsFiles(dist); } catch { return []; } })()) rmSync(f);
  const host = { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n')); } };
  const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.build.json'), {}, host);
  const options = { ...config.options, types: [...(config.options.types ?? []), 'node'] };
  const files = [...config.fileNames, join(root, 'io', 'index.ts'), join(root, 'weights-loader', 'node.ts')];
  const program = ts.createProgram(files, options);
  const emitted = program.emit(undefined, (file, text, bom) => {
    const js = text.replace(/(from\s+|import\()(['"])(\.\.?\/[^'"]*)\.ts\2/g, '$1$2$3.js$2');
    ts.sys.writeFile(file, resolve(file) === join(dist, 'index.d.ts') ? WEBGPU_TYPES + js : js, bom);
  });
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics];
  if (diagnostics.length) {
    throw new Error(ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' }));
  }
  writeFileSync(join(dist, 'node.d.ts'), `${WEBGPU_TYPES}// maskgpu/node: the Node helpers (dist/node.js)\n${NODE_ENTRY.replaceAll(".ts'", ".js'")}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const pack = process.argv.includes('--pack');
  const outputs = await bundleAll({ minify: process.argv.includes('--minify'), sourcemap: !pack });
  await declarations();
  console.log(`built ${outputs.map((p) => p.slice(root.length)).join(', ')} and dist/**/*.d.ts`);
}
