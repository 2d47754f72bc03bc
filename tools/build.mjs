// Bundles the library for the browser: dist/maskgpu.js, an ES module with the WGSL inlined
// (esbuild's `text` loader) and no Node built-ins, plus type declarations (tsc).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export async function bundle(outfile = `${root}dist/maskgpu.js`, { minify = false } = {}) {
  await build({
    entryPoints: [`${root}index.ts`],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    loader: { '.wgsl': 'text' },
    sourcemap: true,
    minify,
    logLevel: 'warning',
  });
  return outfile;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = await bundle(undefined, { minify: process.argv.includes('--minify') });
  execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', `${root}tsconfig.build.json`], { stdio: 'inherit' });
  console.log(`built ${out} and dist/*.d.ts`);
}
