// `maskgpu segment IMAGE... [--weights W] [--out DIR] [--score-thresh S] [--min-size N]
// [--max-size N] [--verbose]`: detection JSON (COCO uncompressed RLE masks) and an overlay PNG
// per image, written to DIR/<image name>.json and .png.

import { mkdir, writeFile } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN } from '../engine/maskrcnn/model.ts';
import type { MaskRCNNOptions } from '../engine/maskrcnn/options.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile } from '../weights-loader/node.ts';
import { encodePng, readImageFile } from './image-io.ts';
import { renderOverlay } from './overlay.ts';

export const BUNDLED_MODEL = fileURLToPath(new URL('../models/maskgpu-shapes.safetensors', import.meta.url));

export interface SegmentArgs {
  images: string[];
  weights?: string;
  out: string;
  options: MaskRCNNOptions;
  verbose: boolean;
}

export function parseSegmentArgs(argv: string[]): SegmentArgs {
  const args: SegmentArgs = { images: [], out: 'out', options: {}, verbose: false };
  const number = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n)) throw new Error(`${flag} needs a number, got '${v ?? ''}'`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--weights':
        args.weights = argv[++i];
        if (!args.weights) throw new Error('--weights needs a file');
        break;
      case '--out':
        args.out = argv[++i];
        if (!args.out) throw new Error('--out needs a folder');
        break;
      case '--score-thresh':
        args.options.boxScoreThresh = number(a, argv[++i]);
        break;
      case '--min-size':
        args.options.minSize = number(a, argv[++i]);
        break;
      case '--max-size':
        args.options.maxSize = number(a, argv[++i]);
        break;
      case '--verbose':
      case '-v':
        args.verbose = true;
        break;
      default:
        if (a.startsWith('-')) throw new Error(`unknown option '${a}'`);
        args.images.push(a);
    }
  }
  if (!args.images.length) throw new Error('no image given: maskgpu segment IMAGE... [--weights W] [--out DIR]');
  return args;
}

export async function segmentCommand(argv: string[]): Promise<number> {
  const args = parseSegmentArgs(argv);
  const weightsPath = args.weights ?? BUNDLED_MODEL;
  if (!args.weights && !existsSync(BUNDLED_MODEL)) {
    throw new Error(`no --weights given and the bundled model ${BUNDLED_MODEL} is missing; pass --weights FILE (make one with tools/export_torchvision.py)`);
  }
  const file = await readSafetensorsFile(weightsPath, maskrcnnParseOptions);
  const ctx = await GpuContext.create();
  const model = await loadMaskRCNN(ctx, file, args.options);
  if (args.verbose) console.log(`adapter: ${describeAdapter(ctx.report)}\nweights: ${weightsPath} (${model.classes.length} classes)`);
  await mkdir(args.out, { recursive: true });
  let failures = 0;
  for (const path of args.images) {
    try {
      const image = await readImageFile(path);
      ctx.resetPeak();
      const result = await model.segment(image);
      const stem = join(args.out, basename(path, extname(path)));
      await writeFile(`${stem}.json`, JSON.stringify(result, null, 1));
      const overlay = renderOverlay(image, result.detections);
      await writeFile(`${stem}.png`, encodePng(overlay));
      const t = result.timingsMs;
      console.log(`${path}: ${result.detections.length} detections in ${t.total.toFixed(0)} ms -> ${stem}.json, ${stem}.png`);
      if (args.verbose) {
        const plan = model.planFor(image.height, image.width);
        const m = ctx.memory;
        console.log(
          `  input ${image.width}x${image.height} -> resized ${plan.resize.outW}x${plan.resize.outH}, padded ${plan.resize.paddedW}x${plan.resize.paddedH}\n` +
            `  timings (ms): plan ${t.plan.toFixed(1)}, gpu ${t.gpu.toFixed(1)}, masks ${t.masks.toFixed(1)}\n` +
            `  GPU memory: peak ${(m.peakBytes / 2 ** 20).toFixed(1)} MiB, live ${(m.bytes / 2 ** 20).toFixed(1)} MiB in ${m.buffers} buffers ` +
            `(plan pool ${(plan.pool.stats.bytes / 2 ** 20).toFixed(1)} MiB in ${plan.pool.stats.buffers} buffers)`,
        );
      }
    } catch (e) {
      failures++;
      console.error(`maskgpu: ${path}: ${(e as Error).message}`);
    }
  }
  model.destroy();
  ctx.device.destroy();
  return failures ? 1 : 0;
}
