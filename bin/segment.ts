// `maskgpu segment IMAGE... [options]` (SEGMENT_USAGE): detection JSON (COCO uncompressed RLE
// masks) and an overlay PNG per image, written to DIR/<image name>.json and .png. Existing outputs
// are refused before any work unless --force is given, two images that would write the same
// files are refused, and every file is written atomically (temp file + rename).

import { mkdir, stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describeAdapter } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { loadMaskRCNN } from '../engine/maskrcnn/model.ts';
import { STAGES, type StagesMs } from '../engine/maskrcnn/stages.ts';
import type { MaskRCNNOptions } from '../engine/maskrcnn/options.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile, writeFileAtomic } from '../weights-loader/node.ts';
import { encodePng, MAX_MEGAPIXELS, readImageFile } from '../io/image.ts';
import { renderOverlay } from '../io/overlay.ts';

export const BUNDLED_MODEL = fileURLToPath(new URL('../models/maskgpu-shapes.safetensors', import.meta.url));

export const SEGMENT_USAGE = `usage: maskgpu segment IMAGE... [options]

  --weights W.safetensors   the model (default: the bundled ${basename(BUNDLED_MODEL)})
  --out DIR                 where DIR/<image>.json and DIR/<image>.png go (default out)
  --force                   replace those files if they exist (without it they are refused)
  --score-thresh S          keep detections scoring above S (default 0.05, torchvision's)
  --min-size N, --max-size N    resize rule (default: the model's metadata, else 800 / 1333)
  --detections-per-image N  keep at most N detections (default 100; fewer lets huge images fit)
  --max-megapixels N        refuse images larger than N million pixels (default ${MAX_MEGAPIXELS})
  --verbose, -v             print the resize, timings and GPU memory`;

export interface SegmentArgs {
  images: string[];
  weights?: string;
  out: string;
  options: MaskRCNNOptions;
  verbose: boolean;
  force: boolean;
  maxMegapixels?: number;
}

export function parseSegmentArgs(argv: string[]): SegmentArgs {
  const args: SegmentArgs = { images: [], out: 'out', options: {}, verbose: false, force: false };
  const number = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || v.trim() === '' || !Number.isFinite(n)) throw new Error(`${flag} needs a number, got '${v ?? ''}'`);
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
      case '--detections-per-image':
        args.options.detectionsPerImage = number(a, argv[++i]);
        break;
      case '--max-megapixels':
        args.maxMegapixels = number(a, argv[++i]);
        if (!(args.maxMegapixels > 0)) throw new Error(`--max-megapixels needs a positive number, got '${argv[i]}'`);
        break;
      case '--force':
        args.force = true;
        break;
      case '--verbose':
      case '-v':
        args.verbose = true;
        break;
      default:
        if (a.startsWith('-')) throw new Error(`unknown option '${a}'\n\n${SEGMENT_USAGE}`);
        args.images.push(a);
    }
  }
  if (!args.images.length) throw new Error(`no image given\n\n${SEGMENT_USAGE}`);
  return args;
}

/**
 * DIR/<image name> for every image, in order. Refuses, before any work is done: two images that
 * would write the same files; an output that is an input image (even with --force: a PNG's
 * overlay would replace it) or a directory; without --force, outputs that already exist.
 */
async function outputStems(args: SegmentArgs): Promise<string[]> {
  const stems = args.images.map((path) => join(args.out, basename(path, extname(path))));
  const seen = new Map<string, string>();
  stems.forEach((stem, i) => {
    const earlier = seen.get(resolve(stem));
    if (earlier !== undefined) {
      throw new Error(`${earlier} and ${args.images[i]} would both be written to ${stem}.json and ${stem}.png; segment them with different --out folders`);
    }
    seen.set(resolve(stem), args.images[i]);
  });
  const statOf = (path: string) => stat(path).catch(() => undefined);
  const inputs = await Promise.all(args.images.map(statOf));
  const existing: string[] = [];
  for (const file of stems.flatMap((stem) => [`${stem}.json`, `${stem}.png`])) {
    const s = await statOf(file);
    if (!s) continue;
    const input = inputs.findIndex((i) => i && i.dev === s.dev && i.ino === s.ino);
    if (input >= 0) throw new Error(`${file} is the input image ${args.images[input]}: segment never writes over its inputs; choose another --out folder`);
    if (s.isDirectory()) throw new Error(`${file} is a directory, where an output file would go; choose another --out folder`);
    existing.push(file);
  }
  if (existing.length && !args.force) {
    const more = existing.length > 1 ? ` (and ${existing.length - 1} more output file${existing.length > 2 ? 's' : ''})` : '';
    throw new Error(`${existing[0]} already exists${more}; pass --force to overwrite, or choose another --out folder`);
  }
  return stems;
}

export async function segmentCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(SEGMENT_USAGE);
    return 0;
  }
  const args = parseSegmentArgs(argv);
  const stems = await outputStems(args);
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
  for (const [i, path] of args.images.entries()) {
    try {
      const image = await readImageFile(path, { maxMegapixels: args.maxMegapixels });
      ctx.resetPeak();
      const result = await model.segment(image, { profile: args.verbose });
      const stem = stems[i];
      const force = { force: args.force };
      await writeFileAtomic(`${stem}.json`, new TextEncoder().encode(JSON.stringify(result, null, 1)), force);
      await writeFileAtomic(`${stem}.png`, encodePng(renderOverlay(image, result.detections)), force);
      const t = result.timingsMs;
      console.log(`${path}: ${result.detections.length} detections in ${t.total.toFixed(0)} ms -> ${stem}.json, ${stem}.png`);
      if (args.verbose) {
        const plan = model.planFor(image.height, image.width);
        const m = ctx.memory;
        console.log(
          `  input ${image.width}x${image.height} -> resized ${plan.resize.outW}x${plan.resize.outH}, padded ${plan.resize.paddedW}x${plan.resize.paddedH}\n` +
            `  timings (ms): plan ${t.plan.toFixed(1)}, gpu ${t.gpu.toFixed(1)}, masks ${t.masks.toFixed(1)}\n` +
            `  stages (ms, ${result.stagesSource ?? 'not measured'}): ${stageLine(result.stagesMs)}\n` +
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

function stageLine(s: StagesMs | null): string {
  return s ? STAGES.map((k) => `${k} ${s[k].toFixed(1)}`).join(', ') : '-';
}
