// maskgpu's public library surface (bundled to dist/maskgpu.js for the browser).

export { acquireDevice, describeAdapter, NoAdapterError, OPTIONAL_FEATURES } from './device.ts';
export type { AcquireOptions, AcquiredDevice, AdapterReport, OptionalFeature } from './device.ts';
export { GpuContext, GpuError, grid1d } from './gpu.ts';
export type { Kernel, KernelSpec } from './gpu.ts';
export { Dispatch, submitDispatches } from './kernels/dispatch.ts';
export { Conv2d, convOutputSize, packConvWeight } from './kernels/conv2d.ts';
export type { Conv2dSpec, ConvPrecision, ConvShape } from './kernels/conv2d.ts';
export { CONV_CLASSES, convClass, DEFAULT_CONV_TILING, getConvTiling, setConvTiling } from './kernels/convTiling.ts';
export type { ConvClass, ConvTile, ConvTiling } from './kernels/convTiling.ts';
export { ConvTranspose2d } from './kernels/convTranspose2d.ts';
export { Linear } from './kernels/linear.ts';
export { planMatmul, DEFAULT_MATMUL_TILE } from './kernels/matmul.ts';
export { planMaxPool2d, maxPoolOutputShape } from './kernels/maxpool2d.ts';
export { planUpsampleNearestAdd } from './kernels/upsampleNearestAdd.ts';
export { planSigmoid } from './kernels/sigmoid.ts';

// Mask R-CNN
export { loadMaskRCNN, MaskRCNN } from './maskrcnn/model.ts';
export type { Detection, RgbImage, SegmentResult } from './maskrcnn/model.ts';
export { TORCHVISION_DEFAULTS } from './maskrcnn/options.ts';
export type { MaskRCNNOptions } from './maskrcnn/options.ts';
export { encodeRle, encodeRleFromBits, decodeRle, rleArea, rleIou } from './rle.ts';
export type { RleMask } from './rle.ts';
export { evaluateCoco, parseCocoDataset, formatMetrics, CocoFormatError } from '../eval/coco.ts';
export type { CocoDataset, CocoMetrics, EvalDetection } from '../eval/coco.ts';
export { instanceColor } from './palette.ts';

// Weights (browser-safe: bytes, fetch with progress)
export { parseSafetensors, serializeSafetensors, SafetensorsError } from '../weights-loader/safetensors.ts';
export { fetchSafetensors } from '../weights-loader/fetch.ts';
export type { SafetensorsFile, Tensor } from '../weights-loader/safetensors.ts';
export { loadMaskRCNNWeights, maskrcnnParseOptions, WeightsError, COCO_CLASSES } from '../weights-loader/maskrcnn.ts';
export type { MaskRCNNWeights, MaskRCNNMeta } from '../weights-loader/maskrcnn.ts';

// Detection kernels
export { SortDescending, TopK } from './kernels/sort.ts';
export { GreedyNms } from './kernels/nms.ts';
export { RoiAlignMultiLevel } from './kernels/roiAlign.ts';
export { PasteMasks } from './kernels/pasteMasks.ts';

// Pruning (L1-norm filter ranking on the GPU, dependency-aware compaction)
export { prune, formatReport, resolvePruneOptions, PruneOptionsError } from '../prune/index.ts';
export type { PruneOptions, PruneReport, PruneResult } from '../prune/index.ts';
