// The engine's public surface: device and context, the plan recorder, the kernels, Mask R-CNN.
// The package entry (../index.ts) re-exports it beside prune/, weights-loader/ and eval/.

export { acquireDevice, describeAdapter, NoAdapterError, OPTIONAL_FEATURES } from './device.ts';
export type { AcquireOptions, AcquiredDevice, AdapterReport, OptionalFeature } from './device.ts';
export { GpuContext, GpuError, grid1d, kernelKey } from './gpu.ts';
export type { Kernel, KernelSpec, KernelTiers } from './gpu.ts';
export { compileKernels, compileWantedKernels, QUICK_CONV_TILE, QUICK_MATMUL_TILE } from './tiers.ts';
export type { CompileReport } from './tiers.ts';
export { Recorder } from './recorder.ts';
export type { Destroyable } from './recorder.ts';
export type { Tensor as GpuTensor } from './planner.ts';
export { Dispatch } from './kernels/dispatch.ts';
export { Conv2d, convOutputSize, packConvWeight } from './kernels/conv2d.ts';
export type { Conv2dSpec, ConvPrecision, ConvShape } from './kernels/conv2d.ts';
export { CONV_CLASSES, convClass, DEFAULT_CONV_TILING } from './kernels/convTiling.ts';
export type { ConvClass, ConvTile, ConvTiling } from './kernels/convTiling.ts';
export { ConvTranspose2d } from './kernels/convTranspose2d.ts';
export { Linear } from './kernels/linear.ts';
export { recordMatmul, DEFAULT_MATMUL_TILE } from './kernels/matmul.ts';
export { recordMaxPool2d, maxPoolOutputShape } from './kernels/maxpool2d.ts';
export { recordUpsampleNearestAdd } from './kernels/upsampleNearestAdd.ts';
export { recordSigmoid } from './kernels/sigmoid.ts';

// Detection kernels
export { SortDescending } from './kernels/sort.ts';
export { TopK } from './kernels/sortTopk.ts';
export { GreedyNms } from './kernels/nms.ts';
export { RoiAlignMultiLevel } from './kernels/roiAlign.ts';
export { PasteMasks } from './kernels/pasteMasks.ts';

// Mask R-CNN
export { loadMaskRCNN, MaskRCNN } from './maskrcnn/model.ts';
export type { Detection, PlanSummary, RgbImage, SegmentResult, SegmentOptions } from './maskrcnn/model.ts';
export { TORCHVISION_DEFAULTS } from './maskrcnn/options.ts';
export type { MaskRCNNOptions } from './maskrcnn/options.ts';
export { STAGES } from './maskrcnn/stages.ts';
export type { StageName, StagesMs } from './maskrcnn/stages.ts';
export { encodeRle, encodeRleFromBits, decodeRle, rleArea, rleIou } from './rle.ts';
export type { RleMask } from './rle.ts';
export { instanceColor } from './palette.ts';
