// `maskgpu prune --weights IN --ratio R [--scope global|layer] [--granularity filter|kernel]
// [--mode compact|mask] [--round-to N] [--normalize none|mean|fanin] --out OUT [--report R.json]
// [--force]` and the finer options below: L1-norm pruning of a Mask R-CNN safetensors file
// (prune/). Never writes over its input; refuses to replace OUT (or the report) without --force;
// writes atomically.

import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { GpuContext } from '../engine/gpu.ts';
import { formatReport, prune, resolvePruneOptions, type PruneOptions } from '../prune/index.ts';
import { maskrcnnParseOptions } from '../weights-loader/maskrcnn.ts';
import { readSafetensorsFile, writeFileAtomic } from '../weights-loader/node.ts';
import { serializeSafetensors } from '../weights-loader/safetensors.ts';

export const PRUNE_USAGE = `usage: maskgpu prune --weights IN.safetensors --ratio R --out OUT.safetensors [options]

  --ratio R                 fraction of prunable channels (or kernels) to remove, 0 <= R < 1
  --scope global|layer      one L1 threshold over all filters (default, the study) or R in every layer
  --granularity filter|kernel   whole output channels (default) or single k x k kernels (zeroed)
  --mode compact|mask       remove the channels (default) or zero them with shapes unchanged
  --normalize none|mean|fanin   per-layer normalisation of L1 norms for global ranking (default none)
  --coupled leave|prune     residual/FPN-coupled channel groups: leave whole (default) or prune as one
  --compensation carrier|bias|none   how removed channels' constants are kept (default carrier: exact; none: dropped)
  --bn-scale                score filters by L1 x |BN scale| instead of the raw conv weight
  --round-to N              kept channel counts are multiples of N (default 1)
  --min-channels N          every layer keeps at least N channels (default 1)
  --max-layer-ratio X       at most X of one layer's channels go (default 1)
  --include PATTERN         prune only layers matching ('*' glob or /regex/; repeatable)
  --exclude PATTERN         never prune layers matching (repeatable)
  --input-size HxW          input size for the report's GMACs (default: 3:2 at the model's min_size)
  --dtype f32|f16           output float type (default: f16 if the input is all f16, else f32)
  --report R.json           also write the full report as JSON
  --force                   replace OUT / the report if they exist (never the input)`;

export interface PruneArgs {
  weights: string;
  out: string;
  report?: string;
  force: boolean;
  dtype?: 'F32' | 'F16';
  options: PruneOptions;
}

export function parsePruneArgs(argv: string[]): PruneArgs {
  const o: Partial<PruneOptions> & { include: string[]; exclude: string[] } = { include: [], exclude: [] };
  let weights: string | undefined;
  let out: string | undefined;
  let report: string | undefined;
  let force = false;
  let dtype: PruneArgs['dtype'];
  const value = (flag: string, v: string | undefined): string => {
    if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
    return v;
  };
  const number = (flag: string, v: string | undefined): number => {
    const s = value(flag, v);
    const n = Number(s);
    if (s.trim() === '' || !Number.isFinite(n)) throw new Error(`${flag} needs a number, got '${s}'`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--weights': weights = value(a, next()); break;
      case '--out': out = value(a, next()); break;
      case '--report': report = value(a, next()); break;
      case '--force': force = true; break;
      case '--ratio': o.ratio = number(a, next()); break;
      case '--scope': o.scope = value(a, next()) as PruneOptions['scope']; break;
      case '--granularity': o.granularity = value(a, next()) as PruneOptions['granularity']; break;
      case '--mode': o.mode = value(a, next()) as PruneOptions['mode']; break;
      case '--normalize': o.normalize = value(a, next()) as PruneOptions['normalize']; break;
      case '--coupled': o.coupled = value(a, next()) as PruneOptions['coupled']; break;
      case '--compensation': o.compensation = value(a, next()) as PruneOptions['compensation']; break;
      case '--bn-scale': o.bnScale = true; break;
      case '--round-to': o.roundTo = number(a, next()); break;
      case '--min-channels': o.minChannels = number(a, next()); break;
      case '--max-layer-ratio': o.maxLayerRatio = number(a, next()); break;
      case '--include': o.include.push(value(a, next())); break;
      case '--exclude': o.exclude.push(value(a, next())); break;
      case '--input-size': {
        const m = /^(\d+)x(\d+)$/.exec(value(a, next()));
        if (!m) throw new Error(`--input-size needs HxW, e.g. 800x1216, got '${argv[i]}'`);
        o.inputSize = [Number(m[1]), Number(m[2])];
        break;
      }
      case '--dtype': {
        const d = value(a, next()).toUpperCase();
        if (d !== 'F32' && d !== 'F16') throw new Error(`--dtype is '${argv[i]}': use f32 or f16`);
        dtype = d;
        break;
      }
      default:
        throw new Error(`unknown option '${a}'\n\n${PRUNE_USAGE}`);
    }
  }
  if (!weights) throw new Error(`--weights IN is required\n\n${PRUNE_USAGE}`);
  if (!out) throw new Error(`--out OUT is required\n\n${PRUNE_USAGE}`);
  if (o.ratio === undefined) throw new Error(`--ratio R is required (e.g. --ratio 0.4)\n\n${PRUNE_USAGE}`);
  const options = { ...o, ratio: o.ratio } as PruneOptions;
  resolvePruneOptions(options); // reject bad values before reading anything
  return { weights, out, report, force, dtype, options };
}

/** The same file, by path or by identity (hard links, symlinks). */
async function sameFile(a: string, b: string): Promise<boolean> {
  if (resolve(a) === resolve(b)) return true;
  try {
    const [sa, sb] = await Promise.all([stat(a), stat(b)]);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}

export async function pruneCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(PRUNE_USAGE);
    return 0;
  }
  const args = parsePruneArgs(argv);
  for (const [flag, path] of [['--out', args.out], ['--report', args.report]] as const) {
    if (path && (await sameFile(path, args.weights))) throw new Error(`${flag} ${path} is the input weights file: write the result somewhere else (the input is never overwritten)`);
    if (path && (await isDirectory(path))) throw new Error(`${flag} ${path} is a directory: give a file name`);
    if (path && !args.force && (await exists(path))) throw new Error(`${path} already exists; pass --force to overwrite it`);
  }
  if (args.report && resolve(args.report) === resolve(args.out)) throw new Error('--report and --out name the same file');
  const file = await readSafetensorsFile(args.weights, maskrcnnParseOptions);
  const ctx = await GpuContext.create();
  try {
    const t0 = performance.now();
    const { file: pruned, report } = await prune(ctx, file, args.options);
    const allHalf = [...file.tensors.values()].every((t) => t.dtype === 'F16');
    const bytes = serializeSafetensors(pruned.tensors, pruned.metadata, { dtype: args.dtype ?? (allHalf ? 'F16' : 'F32') });
    await writeFileAtomic(args.out, bytes, { force: args.force });
    if (args.report) await writeFileAtomic(args.report, new TextEncoder().encode(JSON.stringify(report, null, 1) + '\n'), { force: args.force });
    console.log(formatReport(report));
    console.log(`\nwrote ${args.out} (${(bytes.length / 2 ** 20).toFixed(2)} MiB)${args.report ? ` and ${args.report}` : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    ctx.device.destroy();
  }
}
