// maskgpu's public library surface (bundled to dist/maskgpu.js for the browser).

export { acquireDevice, describeAdapter, NoAdapterError, OPTIONAL_FEATURES } from './device.ts';
export type { AcquireOptions, AcquiredDevice, AdapterReport, OptionalFeature } from './device.ts';
export { GpuContext, GpuError, grid1d } from './gpu.ts';
export type { Kernel, KernelSpec } from './gpu.ts';
export { Dispatch, submitDispatches } from './kernels/dispatch.ts';
export { Conv2d, convOutputSize, DEFAULT_CONV_TILE, reorderConvWeight } from './kernels/conv2d.ts';
export type { Conv2dSpec, ConvShape, ConvTile } from './kernels/conv2d.ts';
export { ConvTranspose2d } from './kernels/convTranspose2d.ts';
export { Linear } from './kernels/linear.ts';
export { planMatmul, DEFAULT_MATMUL_TILE } from './kernels/matmul.ts';
export { planMaxPool2d, maxPoolOutputShape } from './kernels/maxpool2d.ts';
export { planUpsampleNearestAdd } from './kernels/upsampleNearestAdd.ts';
export { planSigmoid } from './kernels/sigmoid.ts';
