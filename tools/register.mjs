// `node --import ./tools/register.mjs file.ts` runs TypeScript sources directly and imports
// `.wgsl` files as strings, the same way the esbuild bundle does (see tools/loader-hooks.mjs).
import { register } from 'node:module';
register('./loader-hooks.mjs', import.meta.url);
