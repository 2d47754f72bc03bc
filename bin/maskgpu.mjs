#!/usr/bin/env node
// The `maskgpu` command.
//  - In a checkout (bin/cli.ts is next to this file) it runs the TypeScript sources directly
//    (tools/loader-hooks.mjs: esbuild, a devDependency, strips the types on import; .wgsl files load
//    as text), so there is no build step between a clone, an edit and the command.
//  - In the npm package (no TypeScript in it) it runs the compiled CLI, dist/cli.js, which
//    `npm pack` / `npm publish` build (package.json's prepack: tools/build.mjs).
import { existsSync } from 'node:fs';
import { register } from 'node:module';

let cli;
if (existsSync(new URL('./cli.ts', import.meta.url))) {
  register('../tools/loader-hooks.mjs', import.meta.url);
  cli = await import('./cli.ts');
} else {
  const compiled = new URL('../dist/cli.js', import.meta.url);
  if (!existsSync(compiled)) {
    console.error('maskgpu: dist/cli.js is missing: this copy of maskgpu was not built (`npm run build` in its folder builds it)');
    process.exit(1);
  }
  cli = await import(compiled.href);
}
process.exitCode = await cli.main(process.argv.slice(2));
