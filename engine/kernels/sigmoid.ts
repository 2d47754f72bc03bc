// sigmoid (shaders/sigmoid.wgsl): elementwise torch.sigmoid, out of place.

import source from '../../shaders/sigmoid.wgsl';
import { numel, type Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

/** Records sigmoid(x); returns a tensor of x's shape. */
export function recordSigmoid(rec: Recorder, x: Tensor, label = 'sigmoid'): Tensor {
  const count = numel(x.shape);
  const y = rec.tensor(label, x.shape);
  const kernel = rec.ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(rec.ctx, count, kernel.workgroup[0]);
  rec.record(Dispatch.create(rec.ctx, kernel, { count, row_pitch: rowPitch }, { input: x.buffer, output: y.buffer }, grid));
  return y;
}
