// Node-only file helpers for weights: read a safetensors file with errors that name the path, and
// write outputs atomically (temp file in the same directory, then rename) without clobbering an
// existing file unless asked to.

import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseSafetensors, SafetensorsError, type ParseOptions, type SafetensorsFile } from './safetensors.ts';

export async function readSafetensorsFile(path: string, options: ParseOptions = {}): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new SafetensorsError(
        `weights file not found: ${path}. Export torchvision's maskrcnn_resnet50_fpn weights to safetensors with tools/export_torchvision.py, or omit --weights to use the bundled model`,
      );
    }
    if (code === 'EISDIR') throw new SafetensorsError(`${path} is a directory, not a safetensors file`);
    throw new SafetensorsError(`cannot read weights file ${path}: ${(e as Error).message}`);
  }
  try {
    return parseSafetensors(bytes, options);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new SafetensorsError(`${path}: ${e.message}`, e.key, e.offset);
    throw e;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Writes `bytes` to `path` so that readers never see a half-written file: the data goes to a
 * temporary file in the same directory (same filesystem), is flushed, then moved into place; on
 * any failure the temporary file is removed and `path` is left as it was. Without `force` an
 * existing file is an error; the final step is then a hard link, which fails atomically if the
 * file appeared in the meantime.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array, options: { force?: boolean } = {}): Promise<void> {
  const refuse = () => new Error(`${path} already exists; pass --force to overwrite it`);
  if (!options.force && (await exists(path))) throw refuse();
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx').catch((e: Error) => {
    throw new Error(`cannot write ${path}: ${e.message}`);
  });
  try {
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } catch (e) {
      // Disk full, file too large, I/O error: the temporary file goes, `path` is untouched.
      throw new Error(`cannot write ${path}: ${(e as Error).message}; it was left as it was`);
    } finally {
      await handle.close();
    }
    if (options.force) {
      await rename(tmp, path).catch((e: Error) => {
        throw new Error(`cannot replace ${path}: ${e.message}; it was left as it was`);
      });
      return;
    }
    try {
      await link(tmp, path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw refuse();
      // Filesystems without hard links: fall back to the (already checked) rename.
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV') throw e;
      await rename(tmp, path);
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
