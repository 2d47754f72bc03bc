// Node module hooks: strip TypeScript with esbuild (no type checking: `npm run typecheck` does
// that) and turn `.wgsl` files into `export default "<source>"`, like esbuild's `text` loader.
import { readFile } from 'node:fs/promises';
import { transform } from 'esbuild';

export async function load(url, context, nextLoad) {
  if (url.endsWith('.wgsl')) {
    const source = await readFile(new URL(url), 'utf8');
    return { format: 'module', source: `export default ${JSON.stringify(source)};`, shortCircuit: true };
  }
  if (url.endsWith('.ts') && url.startsWith('file:')) {
    const source = await readFile(new URL(url), 'utf8');
    const out = await transform(source, {
      loader: 'ts', format: 'esm', target: 'es2022', sourcemap: 'inline', sourcefile: new URL(url).pathname,
    });
    return { format: 'module', source: out.code, shortCircuit: true };
  }
  return nextLoad(url, context);
}
