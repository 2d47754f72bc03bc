// `maskgpu segment IMAGE... [options]` (SEGMENT_USAGE): detection JSON (COCO uncompressed RLE
// masks) and an overlay PNG per image, written to DIR/<image name>.json and .png. Existing outputs
// are refused before any work unless --force is given, two images that would write the same
// files are refused, and every file is written atomically (temp file + rename): io/outputs.ts.
// With more than one image, progress and an ETA go to stderr (io/progress.ts: a bar on a terminal,
// a plain line every few seconds otherwise); stdout keeps one line per image.

import { mkdir } from 'node:fs/promises';
import { basename } from 'node:path';
import { existsSync } from 'node:fs';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN } from '../engine/maskrcnn/model.ts';
import { STAGES, type StagesMs } from '../engine/maskrcnn/stages.ts';
import type { MaskRCNNOptions } from '../engine/maskrcnn/options.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile } from '../weights-loader/node.ts';
import { parseCommandLine, UsageError } from '../io/args.ts';
import { BUNDLED_MODEL } from '../io/bundled.ts';
import { DEFAULT_EXIF_ORIENTATION, MAX_MEGAPIXELS, readImageFile, type ExifOrientationMode } from '../io/image.ts';
import { segmentOutputStems, writeSegmentation } from '../io/outputs.ts';
import { createProgress } from '../io/progress.ts';
import { useCachedConvTiling } from '../io/tiles.ts';
import { kernelCacheFile, recordCompiledKernels, startBackgroundCompile, useCompiledKernels } from '../io/kernelCache.ts';
import type { KernelTiers } from '../engine/gpu.ts';

export const SEGMENT_USAGE = `usage: maskgpu segment IMAGE... [options]

  --weights W.safetensors   the model (default: the bundled ${basename(BUNDLED_MODEL)})
  --out DIR                 where DIR/<image>.json and DIR/<image>.png go (default out)
  --force                   replace those files if they exist (without it they are refused)
  --score-thresh S          keep detections scoring above S (default 0.05, torchvision's)
  --min-size N, --max-size N    resize rule (default: the model's metadata, else 800 / 1333)
  --detections-per-image N  keep at most N detections (default 100; fewer lets huge images fit)
  --max-megapixels N        refuse images larger than N million pixels (default ${MAX_MEGAPIXELS})
  --exif-orientation M      ignore|apply the EXIF orientation tag (default ${DEFAULT_EXIF_ORIENTATION}: the stored pixels,
                            as torchvision's usual Image.open(path).convert('RGB') sees them)
  --kernels T               tiered|tuned|quick (default tiered: quick-to-compile stand-ins until the tuned kernels
                            are compiled, which a background process then does for the next runs; tuned: always
                            the tuned ones, a long first run on a new machine; quick: never the tuned ones)
  --prepare                 compile the tuned kernels before the first image instead (a slower first result,
                            no stand-ins)
  --no-background-compile   leave the stand-ins' tuned kernels uncompiled (no background process)
  --verbose, -v             print the resize, timings, kernels and GPU memory`;

const SEGMENT_OPTIONS = {
  command: 'maskgpu segment',
  positionals: 'IMAGE',
  options: {
    weights: { type: 'string' },
    out: { type: 'string', default: 'out' },
    force: { type: 'boolean' },
    'score-thresh': { type: 'number' },
    'min-size': { type: 'number' },
    'max-size': { type: 'number' },
    'detections-per-image': { type: 'number' },
    'max-megapixels': { type: 'number', above: 0 },
    'exif-orientation': { type: 'string', choices: ['ignore', 'apply'] },
    kernels: { type: 'string', choices: ['tiered', 'tuned', 'quick'] },
    prepare: { type: 'boolean' },
    'no-background-compile': { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
  },
} as const;

export interface SegmentArgs {
  images: string[];
  weights?: string;
  out: string;
  options: MaskRCNNOptions;
  verbose: boolean;
  force: boolean;
  maxMegapixels?: number;
  exifOrientation?: ExifOrientationMode;
  kernels: KernelTiers;
  prepare: boolean;
  backgroundCompile: boolean;
}

/** The command line of `maskgpu segment`; undefined for --help. Throws a UsageError on a bad one. */
export function parseSegmentArgs(argv: string[]): SegmentArgs | undefined {
  const parsed = parseCommandLine(argv, SEGMENT_OPTIONS);
  if (!parsed) return undefined;
  const v = parsed.values;
  if (!parsed.positionals.length) throw new UsageError(`no image given\n\n${SEGMENT_USAGE}`);
  if (v.weights === '') throw new UsageError('--weights needs a file');
  if (v.out === '') throw new UsageError('--out needs a folder');
  const options: MaskRCNNOptions = {};
  if (v['score-thresh'] !== undefined) options.boxScoreThresh = v['score-thresh'];
  if (v['min-size'] !== undefined) options.minSize = v['min-size'];
  if (v['max-size'] !== undefined) options.maxSize = v['max-size'];
  if (v['detections-per-image'] !== undefined) options.detectionsPerImage = v['detections-per-image'];
  return { images: parsed.positionals, weights: v.weights, out: v.out, options, verbose: v.verbose, force: v.force, maxMegapixels: v['max-megapixels'], exifOrientation: v['exif-orientation'],
    kernels: (v.kernels ?? 'tiered') as KernelTiers, prepare: !!v.prepare, backgroundCompile: !v['no-background-compile'] };
}

export async function segmentCommand(argv: string[]): Promise<number> {
  const args = parseSegmentArgs(argv);
  if (!args) {
    console.log(SEGMENT_USAGE);
    return 0;
  }
  const stems = await segmentOutputStems(args.images, args.out, args.force);
  const weightsPath = args.weights ?? BUNDLED_MODEL;
  if (!args.weights && !existsSync(BUNDLED_MODEL)) {
    throw new Error(`no --weights given and the bundled model ${BUNDLED_MODEL} is missing; pass --weights FILE (make one with tools/export_torchvision.py)`);
  }
  const file = await readSafetensorsFile(weightsPath, maskrcnnParseOptions);
  const ctx = await GpuContext.create();
  useCachedConvTiling(ctx); // `npm run tune`'s table for this adapter, if it ran here
  ctx.setKernelTiers(args.kernels);
  const known = useCompiledKernels(ctx); // the tuned kernels earlier runs compiled here (io/kernelCache.ts)
  const model = await loadMaskRCNN(ctx, file, args.options);
  model.backgroundCompile = false; // this process exits after the images: a detached one compiles (below)
  if (args.verbose) console.log(`adapter: ${describeAdapter(ctx.report)}\nweights: ${weightsPath} (${model.classes.length} classes)\nkernels: ${args.kernels}, ${known} known compiled (${kernelCacheFile()})`);
  await mkdir(args.out, { recursive: true });
  let failures = 0;
  const progress = args.images.length > 1 ? createProgress({ label: 'segment', total: args.images.length }) : undefined;
  // On a terminal the bar is redrawn in place on stderr: clear it before a line of output.
  const clearBar = () => {
    if (progress && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  };
  for (const [i, path] of args.images.entries()) {
    try {
      const image = await readImageFile(path, { maxMegapixels: args.maxMegapixels, exifOrientation: args.exifOrientation });
      ctx.resetPeak();
      if (args.prepare) {
        await model.prepare(image.height, image.width);
        const c = await model.compileTunedKernels();
        if (args.verbose && c.compiled) console.log(`  prepared: ${c.compiled} tuned kernels compiled in ${(c.ms / 1000).toFixed(1)} s (${c.where})`);
      }
      const result = await model.segment(image, { profile: args.verbose });
      const stem = stems[i];
      await writeSegmentation(stem, image, result, { force: args.force });
      const t = result.timingsMs;
      clearBar();
      console.log(`${path}: ${result.detections.length} detections in ${t.total.toFixed(0)} ms -> ${stem}.json, ${stem}.png`);
      if (args.verbose) {
        const plan = await model.prepare(image.height, image.width);
        const m = ctx.memory;
        console.log(
          `  input ${image.width}x${image.height} -> resized ${plan.resize.outW}x${plan.resize.outH}, padded ${plan.resize.paddedW}x${plan.resize.paddedH}\n` +
            `  timings (ms): plan ${t.plan.toFixed(1)}, gpu ${t.gpu.toFixed(1)}, masks ${t.masks.toFixed(1)}\n` +
            `  stages (ms, ${result.stagesSource ?? 'not measured'}): ${stageLine(result.stagesMs)}\n` +
            `  kernels: ${plan.quickStandIns ? 'quick stand-ins for tuned kernels not compiled yet' : args.kernels === 'quick' ? 'quick' : 'tuned'}, ${ctx.pipelines.count} pipelines\n` +
            `  GPU memory: peak ${(m.peakBytes / 2 ** 20).toFixed(1)} MiB, live ${(m.bytes / 2 ** 20).toFixed(1)} MiB in ${m.buffers} buffers ` +
            `(plan pool ${(plan.pool.bytes / 2 ** 20).toFixed(1)} MiB in ${plan.pool.buffers} buffers)`,
        );
      }
    } catch (e) {
      failures++;
      clearBar();
      console.error(`maskgpu: ${path}: ${(e as Error).message}`);
    }
    progress?.tick(1, basename(path));
  }
  progress?.done(failures ? `${failures} failed` : undefined);
  // What ran is compiled now; stand-ins' tuned kernels are compiled by a process of its own. The
  // images are written by now: a cache folder that cannot be written only costs speed later.
  try {
    recordCompiledKernels(ctx.report, ctx.compiledKernelKeys());
    const background = args.backgroundCompile ? startBackgroundCompile(ctx) : undefined;
    if (background?.already) {
      console.error(`maskgpu: ${background.kernels} tuned kernels are not compiled yet; a background compile is already under way (pid ${background.pid}, log ${background.log})`);
    } else if (background) {
      console.error(`maskgpu: compiling ${background.kernels} tuned kernels in the background for the next runs (pid ${background.pid}, log ${background.log}; --no-background-compile skips this)`);
    }
  } catch (e) {
    console.error(`maskgpu: could not record the compiled kernels or start the background compile in ${kernelCacheFile()} (${(e as Error).message}); the next run starts on quick kernels again`);
  }
  model.destroy();
  ctx.device.destroy();
  return failures ? 1 : 0;
}

function stageLine(s: StagesMs | null): string {
  return s ? STAGES.map((k) => `${k} ${s[k].toFixed(1)}`).join(', ') : '-';
}
