// The unlabeled images of a folder for `maskgpu prune --calibrate DIR` and the experiment (prune()
// itself takes decoded images, so the browser bundle never needs this).
// Every PNG and JPEG in DIR (by extension, sorted by name; other files are ignored), decoded by
// io/image.ts as segment and eval decode them. Errors name the folder or the file.

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readImageFile } from './image.ts';
import { CalibrationError, type CalibrationImage } from '../prune/calibrationOptions.ts';

const IMAGE_FILE = /\.(png|jpe?g)$/i;

/** The image files of `dir`, sorted by name; `count` keeps the first ones (an error if there are fewer). */
export async function listCalibrationImages(dir: string, count?: number): Promise<string[]> {
  let isDir: boolean;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CalibrationError(`calibration folder ${dir}: ${code === 'ENOENT' ? 'no such folder' : (e as Error).message}`);
  }
  if (!isDir) throw new CalibrationError(`calibration folder ${dir} is a file: give a folder of PNG or JPEG images`);
  const names = (await readdir(dir)).filter((n) => IMAGE_FILE.test(n)).sort();
  if (!names.length) throw new CalibrationError(`calibration folder ${dir} holds no PNG or JPEG images (*.png, *.jpg, *.jpeg)`);
  if (count !== undefined) {
    if (!Number.isSafeInteger(count) || count < 1) throw new CalibrationError(`calibration images: ${count} is not a positive integer`);
    if (count > names.length) throw new CalibrationError(`${count} calibration images asked for, but ${dir} holds only ${names.length}: ask for fewer or add images`);
  }
  return names.slice(0, count ?? names.length).map((n) => join(dir, n));
}

/** Decodes the images `listCalibrationImages` found; an unreadable one is a CalibrationError naming it. */
export async function readCalibrationImages(dir: string, count?: number, onImage?: (done: number, total: number) => void): Promise<CalibrationImage[]> {
  const files = await listCalibrationImages(dir, count);
  const images: CalibrationImage[] = [];
  for (const file of files) {
    try {
      const im = await readImageFile(file);
      images.push({ width: im.width, height: im.height, data: im.data, name: file });
    } catch (e) {
      throw new CalibrationError(`calibration image unreadable: ${(e as Error).message}`);
    }
    onImage?.(images.length, files.length);
  }
  return images;
}
