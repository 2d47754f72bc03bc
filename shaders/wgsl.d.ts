// `.wgsl` files are imported as their source text (esbuild's `text` loader in the bundle,
// tools/loader-hooks.mjs in Node).
declare module '*.wgsl' {
  const source: string;
  export default source;
}
