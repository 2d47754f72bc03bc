// io/: maskgpu's Node-only library (node:fs, node:path, node:util, pngjs, sharp), the entry for
// Node code that is not the engine itself: the CLI (bin/), the tests, benchmarks and experiments
// import it. The browser bundle (index.ts -> dist/maskgpu.js) must never import io/.
//
//   image.ts     PNG/JPEG files <-> RGB pixels (decodeImage, readImageFile, encodePng)
//   font.ts      the built-in bitmap font of the overlays
//   overlay.ts   detections drawn over the image (renderOverlay)
//   outputs.ts   the CLI's output-file rules (never over an input, --force to replace) and writers
//   split.ts     COCO-format splits on disk (loadSplit, predictSplit) and COCO results files
//   bundled.ts   where the bundled model, samples and dataset are (BUNDLED_MODEL, ...)
//   args.ts      the one command-line parser (parseCommandLine, parseScriptArgs)
//   progress.ts  progress bars (terminal) or periodic lines (logs) with an ETA for long runs
//   tiles.ts     the conv tile tuner's cache file, applied to a context only when asked (useCachedConvTiling)
//   calibrationImages.ts  a folder's unlabeled images for prune's calibration (maskgpu prune --calibrate)
//   kernelCache.ts  which tuned kernels the driver has compiled (useCompiledKernels), background compiles

export * from './image.ts';
export * from './font.ts';
export * from './overlay.ts';
export * from './outputs.ts';
export * from './split.ts';
export * from './bundled.ts';
export * from './args.ts';
export * from './tiles.ts';
export * from './kernelCache.ts';
export * from './calibrationImages.ts';
export * from './progress.ts';
