// maskgpu's package entry (bundled to dist/maskgpu.js, types in dist/index.d.ts): the engine,
// pruning, weights and evaluation as peers; none of them imports this file, so there is no cycle.
// Browser-safe: Node-only helpers (image files, the bundled model's path, the tile cache) are in
// io/ (its own entry, io/index.ts).

export * from './engine/index.ts';
export * from './weights-loader/index.ts';
export * from './eval/index.ts';
export { prune, formatReport, resolvePruneOptions, PruneOptionsError } from './prune/index.ts';
export type { PruneOptions, PruneReport, PruneResult } from './prune/index.ts';
