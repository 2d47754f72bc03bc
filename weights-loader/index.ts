// Weights, browser-safe: the safetensors format, half floats, fetch with progress and the Cache
// API, and Mask R-CNN's torchvision state dict (key mapping, validation, BatchNorm folding).
// Node-only file reading is weights-loader/node.ts, outside this entry.

export { parseSafetensors, serializeSafetensors, SafetensorsError } from './safetensors.ts';
export type { ParseOptions, SafetensorsFile, SerializeOptions, Tensor } from './safetensors.ts';
export { floatToHalf, halfToFloat } from './float16.ts';
export { fetchSafetensors, DEFAULT_WEIGHTS_CACHE } from './fetch.ts';
export type { FetchOptions } from './fetch.ts';
export { loadMaskRCNNWeights, maskrcnnParseOptions, WeightsError, COCO_CLASSES } from './maskrcnn.ts';
export type { MaskRCNNWeights, MaskRCNNMeta } from './maskrcnn.ts';
