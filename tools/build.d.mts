/** Bundles engine/index.ts to `outfile` (default dist/maskgpu.js) for the browser; returns the path. */
export function bundle(outfile?: string, options?: { minify?: boolean }): Promise<string>;
