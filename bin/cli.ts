// maskgpu's command line (Node only). Subcommands grow with the engine; each prints a clear
// error and a non-zero exit code on bad input.

import { describeAdapter, NoAdapterError } from '../engine/device.ts';
import { GpuContext } from '../engine/gpu.ts';
import { segmentCommand } from './segment.ts';
import { pruneCommand } from './prune.ts';
import { evalCommand } from './eval.ts';

const USAGE = `usage: maskgpu <command>

commands:
  segment IMAGE... [--weights W.safetensors] [--out DIR] [--force] [--score-thresh S] [--min-size N] [--max-size N]
          [--detections-per-image N] [--max-megapixels N] [--verbose]   (maskgpu segment --help: all options)
                  detections (JSON, COCO RLE masks) and an overlay PNG per image; existing outputs need --force
  prune --weights IN --ratio R --out OUT [--scope global|layer] [--granularity filter|kernel] [--mode compact|mask]
        [--round-to N] [--normalize none|mean|fanin] [--report R.json] [--force]   (maskgpu prune --help: all options)
                  L1-norm filter pruning on the GPU; writes narrower weights the engine runs natively
  eval [--weights W] [--data DIR] [--limit N] [--predictions-out F] [--predictions F] [--json]
                  COCO box/mask AP@[.5:.95], AP50, AP75 and mean matched mask IoU on a COCO-format split
                  (default: the bundled model on data/shapes/test)
  info            the WebGPU adapter maskgpu gets here: name, features, limits (JSON with --json)
  help            this text

benchmarks: npm run bench:kernels`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'prune':
      try {
        return await pruneCommand(rest);
      } catch (e) {
        console.error(`maskgpu prune: ${(e as Error).message}`);
        return e instanceof NoAdapterError ? 3 : 1;
      }
    case 'segment':
      try {
        return await segmentCommand(rest);
      } catch (e) {
        console.error(`maskgpu segment: ${(e as Error).message}`);
        return e instanceof NoAdapterError ? 3 : 1;
      }
    case 'eval':
      try {
        return await evalCommand(rest);
      } catch (e) {
        console.error(`maskgpu eval: ${(e as Error).message}`);
        return e instanceof NoAdapterError ? 3 : 1;
      }
    case 'info': {
      try {
        const ctx = await GpuContext.create();
        if (rest.includes('--json')) console.log(JSON.stringify(ctx.report, null, 2));
        else {
          console.log(describeAdapter(ctx.report));
          for (const [k, v] of Object.entries(ctx.report.limits)) console.log(`  ${k}: ${v}`);
        }
        ctx.device.destroy();
        return 0;
      } catch (e) {
        console.error(`maskgpu: ${(e as Error).message}`);
        return e instanceof NoAdapterError ? 3 : 1;
      }
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      console.error(`maskgpu: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}
