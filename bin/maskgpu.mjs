#!/usr/bin/env node
// `maskgpu` command: runs the TypeScript CLI directly (esbuild strips types on import; .wgsl
// files load as text), so there is no build step between a checkout and the command.
import { register } from 'node:module';

register('../tools/loader-hooks.mjs', import.meta.url);
const { main } = await import('./cli.ts');
process.exitCode = await main(process.argv.slice(2));
