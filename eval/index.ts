// Evaluation, browser-safe: COCO box/mask AP and mean matched IoU (coco.ts), and the detection
// comparison gates the tests and benchmarks share (match.ts). Loading a split from disk is
// Node-only (io/split.ts).

export { evaluateCoco, parseCocoDataset, formatMetrics, CocoFormatError } from './coco.ts';
export type { CocoDataset, CocoMetrics, EvalDetection } from './coco.ts';
export * from './match.ts';
