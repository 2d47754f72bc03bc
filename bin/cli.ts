// maskgpu's command line (Node only). bin/ only parses arguments (io/args.ts), calls the library
// (engine/, prune/, eval/, weights-loader/, io/) and prints; each subcommand has --help and
// prints a clear error and a non-zero exit code on bad input (2 for a bad command line).

import { describeAdapter, NoAdapterError } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { parseCommandLine, UsageError } from '../io/args.ts';
import { kernelCacheFile, readCompiledKernels, runCompileJob } from '../io/kernelCache.ts';
import { convTilingCacheFile } from '../io/tiles.ts';
import { segmentCommand, SEGMENT_USAGE } from './segment.ts';
import { pruneCommand, PRUNE_USAGE } from './prune.ts';
import { evalCommand, EVAL_USAGE } from './eval.ts';

const USAGE = `usage: maskgpu <command> [options]   (maskgpu <command> --help: all of its options)

commands:
  segment IMAGE... [--weights W.safetensors] [--out DIR] [--force] [--score-thresh S] [--min-size N] [--max-size N]
          [--detections-per-image N] [--max-megapixels N] [--verbose]
                  detections (JSON, COCO RLE masks) and an overlay PNG per image; existing outputs need --force
  prune --weights IN --ratio R --out OUT [--scope global|layer] [--granularity filter|kernel] [--mode compact|mask]
        [--round-to N] [--normalize none|mean|fanin] [--report R.json] [--force]   (and finer options)
                  L1-norm filter pruning on the GPU; writes narrower weights the engine runs natively
  eval [--weights W] [--data DIR] [--limit N] [--predictions-out F] [--predictions F] [--json]
                  COCO box/mask AP@[.5:.95], AP50, AP75 and mean matched mask IoU on a COCO-format split
                  (default: the bundled model on data/shapes/test)
  info [--json]   the WebGPU adapter maskgpu gets here: name, features, limits, cache files
  compile-kernels JOB   compile a job's kernels and record them (what segment starts in the background)
  help [COMMAND]  this text, or COMMAND's

exit status: 0 done, 1 failed, 2 bad command line, 3 no WebGPU adapter

benchmarks: npm run bench:kernels`;

const INFO_USAGE = `usage: maskgpu info [--json]

  --json                    the adapter report as JSON (name, features, limits)`;

const INFO_OPTIONS = { command: 'maskgpu info', options: { json: { type: 'boolean' } } } as const;

async function infoCommand(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv, INFO_OPTIONS);
  if (!parsed) {
    console.log(INFO_USAGE);
    return 0;
  }
  const ctx = await GpuContext.create();
  if (parsed.values.json) console.log(JSON.stringify(ctx.report, null, 2));
  else {
    console.log(describeAdapter(ctx.report));
    for (const [k, v] of Object.entries(ctx.report.limits)) console.log(`  ${k}: ${v}`);
    console.log(`caches (delete to empty):\n  conv tiles: ${convTilingCacheFile()}\n  compiled kernels: ${kernelCacheFile()} (${readCompiledKernels(ctx.report).length} for this adapter)`);
  }
  ctx.device.destroy();
  return 0;
}

const COMPILE_USAGE = `usage: maskgpu compile-kernels JOB [--record FILE]

  Compiles the kernels listed in JOB (written by \`maskgpu segment\` for the tuned kernels its quick
  stand-ins replaced), adds their keys to the kernel record and deletes JOB.
  --record FILE             the kernel record (default ${kernelCacheFile()})`;

const COMPILE_OPTIONS = { command: 'maskgpu compile-kernels', positionals: 'JOB', options: { record: { type: 'string' } } } as const;

async function compileCommand(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv, COMPILE_OPTIONS);
  if (!parsed) {
    console.log(COMPILE_USAGE);
    return 0;
  }
  if (parsed.positionals.length !== 1) throw new UsageError(`give one job file\n\n${COMPILE_USAGE}`);
  const ctx = await GpuContext.create();
  try {
    const r = await runCompileJob(ctx, parsed.positionals[0], parsed.values.record ?? kernelCacheFile());
    console.log(`${new Date().toISOString()} compiled ${r.kernels} kernels in ${(r.ms / 1000).toFixed(1)} s`);
  } finally {
    ctx.device.destroy();
  }
  return 0;
}

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<number>; usage: string }> = {
  segment: { run: segmentCommand, usage: SEGMENT_USAGE },
  prune: { run: pruneCommand, usage: PRUNE_USAGE },
  eval: { run: evalCommand, usage: EVAL_USAGE },
  info: { run: infoCommand, usage: INFO_USAGE },
  'compile-kernels': { run: compileCommand, usage: COMPILE_USAGE },
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const sub = command === undefined ? undefined : COMMANDS[command];
  if (sub) {
    try {
      return await sub.run(rest);
    } catch (e) {
      console.error(`maskgpu ${command}: ${(e as Error).message}`);
      return e instanceof UsageError ? 2 : e instanceof NoAdapterError ? 3 : 1;
    }
  }
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h': {
      const about = rest.find((a) => !a.startsWith('-'));
      if (about !== undefined && command === 'help') {
        if (!COMMANDS[about]) {
          console.error(`maskgpu help: unknown command '${about}'\n\n${USAGE}`);
          return 2;
        }
        console.log(COMMANDS[about].usage);
        return 0;
      }
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    }
    default:
      console.error(`maskgpu: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}
