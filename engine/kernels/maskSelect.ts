// maskSelect (shaders/mask_select.wgsl): sigmoid of each detection's predicted-class mask logits
// (torchvision maskrcnn_inference: mask_prob = x.sigmoid()[index, labels]); zero past the kept count.

import source from '../../shaders/mask_select.wgsl';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

/** Records the selection from `logits` [D, C, S, S]; returns probabilities [D, S, S]. */
export function recordMaskSelect(rec: Recorder, io: { logits: Tensor; labels: Tensor; keptCount: Tensor }, label = 'maskSelect'): Tensor {
  if (io.logits.shape.length !== 4) throw new Error(`${label}: logits must be [D, C, S, S], got [${io.logits.shape.join(', ')}]`);
  const [maxDetections, classes, sh, sw] = io.logits.shape;
  const pixels = sh * sw;
  const probs = rec.tensor(label, [maxDetections, sh, sw]);
  const kernel = rec.ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(rec.ctx, maxDetections * pixels, kernel.workgroup[0]);
  rec.record(
    Dispatch.create(
      rec.ctx,
      kernel,
      { max_detections: maxDetections, classes, pixels, row_pitch: rowPitch },
      { logits: io.logits.buffer, labels: io.labels.buffer, kept_count: io.keptCount.buffer, probs: probs.buffer },
      grid,
    ),
  );
  return probs;
}
