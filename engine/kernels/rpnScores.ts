// rpnScores (shaders/rpn_scores.wgsl): one level's objectness logits [A][H][W] -> (y, x, a) order,
// torchvision's permute_and_flatten of the RPN head's cls_logits (batch 1).

import source from '../../shaders/rpn_scores.wgsl';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { Dispatch } from './dispatch.ts';
import { elementGrid } from './elementwise.ts';

/** Records the reorder of `logits` [A, H, W]; returns scores [H * W * A]. */
export function recordRpnScores(rec: Recorder, logits: Tensor, label = 'rpnScores'): Tensor {
  if (logits.shape.length !== 3) throw new Error(`${label}: logits must be [A, H, W], got [${logits.shape.join(', ')}]`);
  const [anchors, h, w] = logits.shape;
  const scores = rec.tensor(label, [h * w * anchors]);
  const kernel = rec.ctx.kernel({ source, label });
  const { grid, rowPitch } = elementGrid(rec.ctx, anchors * h * w, kernel.workgroup[0]);
  rec.record(Dispatch.create(rec.ctx, kernel, { anchors, h, w, row_pitch: rowPitch }, { logits: logits.buffer, scores: scores.buffer }, grid));
  return scores;
}
