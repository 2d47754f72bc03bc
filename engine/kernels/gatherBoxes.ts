// gatherBoxes (shaders/gather_boxes.wgsl): boxes of the NMS survivors, in kept order, zero past
// the kept count (torchvision: proposals = boxes[keep]).

import source from '../../shaders/gather_boxes.wgsl';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';

/** Records the gather; returns boxes [maxBoxes, 4] (rows past keptCount[0] are zero). */
export function recordGatherBoxes(
  rec: Recorder,
  maxBoxes: number,
  io: { candBoxes: Tensor; kept: Tensor; keptCount: Tensor },
  label = 'gatherBoxes',
): Tensor {
  const boxes = rec.tensor(label, [maxBoxes, 4]);
  const kernel = rec.ctx.kernel({ source, label });
  rec.record(
    Dispatch.create(
      rec.ctx,
      kernel,
      { max_boxes: maxBoxes },
      { cand_boxes: io.candBoxes.buffer, kept: io.kept.buffer, kept_count: io.keptCount.buffer, boxes: boxes.buffer },
      [ceilDiv(maxBoxes, kernel.workgroup[0])],
    ),
  );
  return boxes;
}
