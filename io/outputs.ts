// io/outputs.ts: the rules the CLI keeps for the files it writes (Node only: node:fs; the browser
// bundle must not import io/), all checked before any work is done: an output is never one of the
// inputs (by any name: same path, symlink, hard link) nor a directory; an existing output is only
// replaced with `force`; two inputs never write the same output. The files themselves are written
// atomically (temporary file + rename, weights-loader/node.ts writeFileAtomic), so a failed write
// leaves no partial file.

import { stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import type { SegmentResult } from '../engine/maskrcnn/model.ts';
import { writeFileAtomic } from '../weights-loader/node.ts';
import { encodePng, type RgbImage } from './image.ts';
import { renderOverlay } from './overlay.ts';

const statOf = (path: string) => stat(path).catch(() => undefined);

/** The same file, by path or by identity (hard links, symlinks). */
export async function sameFile(a: string, b: string): Promise<boolean> {
  if (resolve(a) === resolve(b)) return true;
  const [sa, sb] = await Promise.all([statOf(a), statOf(b)]);
  return !!sa && !!sb && sa.dev === sb.dev && sa.ino === sb.ino;
}

/**
 * Output files derived from one input file (`maskgpu prune`): each [flag, path] (an absent path is
 * skipped) must not be the input, nor a directory, nor (without `force`) an existing file, and
 * two of them must not name the same file. Throws the first violation, naming the flag.
 */
export async function checkOutputFiles(input: string, outputs: Array<[flag: string, path: string | undefined]>, force: boolean): Promise<void> {
  for (const [flag, path] of outputs) {
    if (!path) continue;
    if (await sameFile(path, input)) throw new Error(`${flag} ${path} is the input weights file: write the result somewhere else (the input is never overwritten)`);
    const s = await statOf(path);
    if (s?.isDirectory()) throw new Error(`${flag} ${path} is a directory: give a file name`);
    if (s && !force) throw new Error(`${path} already exists; pass --force to overwrite it`);
  }
  const given = outputs.filter((o): o is [string, string] => !!o[1]);
  for (let i = 0; i < given.length; i++) {
    for (let j = 0; j < i; j++) {
      if (resolve(given[i][1]) === resolve(given[j][1])) throw new Error(`${given[i][0]} and ${given[j][0]} name the same file`);
    }
  }
}

/**
 * `maskgpu segment`'s outputs: OUT/<image name> (the stem of OUT/<name>.json and .png) for every
 * image, in order. Refuses, before any work is done: two images that would write the same files;
 * an output that is an input image (even with `force`: a PNG's overlay would replace it) or a
 * directory; without `force`, outputs that already exist.
 */
export async function segmentOutputStems(images: string[], out: string, force: boolean): Promise<string[]> {
  const stems = images.map((path) => join(out, basename(path, extname(path))));
  const seen = new Map<string, string>();
  stems.forEach((stem, i) => {
    const earlier = seen.get(resolve(stem));
    if (earlier !== undefined) {
      throw new Error(`${earlier} and ${images[i]} would both be written to ${stem}.json and ${stem}.png; segment them with different --out folders`);
    }
    seen.set(resolve(stem), images[i]);
  });
  const inputs = await Promise.all(images.map(statOf));
  const existing: string[] = [];
  for (const file of stems.flatMap((stem) => [`${stem}.json`, `${stem}.png`])) {
    const s = await statOf(file);
    if (!s) continue;
    const input = inputs.findIndex((i) => i && i.dev === s.dev && i.ino === s.ino);
    if (input >= 0) throw new Error(`${file} is the input image ${images[input]}: segment never writes over its inputs; choose another --out folder`);
    if (s.isDirectory()) throw new Error(`${file} is a directory, where an output file would go; choose another --out folder`);
    existing.push(file);
  }
  if (existing.length && !force) {
    const more = existing.length > 1 ? ` (and ${existing.length - 1} more output file${existing.length > 2 ? 's' : ''})` : '';
    throw new Error(`${existing[0]} already exists${more}; pass --force to overwrite, or choose another --out folder`);
  }
  return stems;
}

/** STEM.json (the result, detections with COCO RLE masks) and STEM.png (the overlay), each written atomically. */
export async function writeSegmentation(stem: string, image: RgbImage, result: SegmentResult, options: { force?: boolean } = {}): Promise<void> {
  await writeFileAtomic(`${stem}.json`, new TextEncoder().encode(JSON.stringify(result, null, 1)), options);
  await writeFileAtomic(`${stem}.png`, encodePng(renderOverlay(image, result.detections)), options);
}
