// detections (shaders/detections.wgsl): gather the NMS survivors into the result arrays and
// scale their boxes back to the original image.

import source from '../../shaders/detections.wgsl';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';
import type { Candidates } from './rpnDecode.ts';

export interface DetectionTensors {
  /** [D, 4] kept boxes in resized-image coordinates (the mask branch's RoIs). */
  boxes: Tensor;
  /** [D, 6] x1 y1 x2 y2 in original-image coordinates, score, label (as f32). */
  result: Tensor;
  /** [D] u32 labels. */
  labels: Tensor;
  /** [D, 4] boxes in original-image coordinates (where masks are pasted). */
  origBoxes: Tensor;
}

/**
 * Records the gather of the kept candidates (`kept`: candidate indices, keptCount[0] of them) into
 * the result arrays, boxes scaled back by (ratioW, ratioH) = original / resized size (float32, as
 * transform.postprocess); rows past the count are zero.
 */
export function recordDetections(
  rec: Recorder,
  p: { maxDetections: number; ratioH: number; ratioW: number },
  io: { candidates: Candidates; kept: Tensor; keptCount: Tensor },
  label = 'detections',
): DetectionTensors {
  const ctx = rec.ctx;
  const D = p.maxDetections;
  const out: DetectionTensors = {
    boxes: rec.tensor(`${label}.boxes`, [D, 4]),
    result: rec.tensor(`${label}.result`, [D, 6]),
    labels: rec.tensor(`${label}.labels`, [D]),
    origBoxes: rec.tensor(`${label}.orig_boxes`, [D, 4]),
  };
  const kernel = ctx.kernel({ source, label });
  rec.record(Dispatch.create(
    ctx,
    kernel,
    { max_detections: p.maxDetections, ratio_h: p.ratioH, ratio_w: p.ratioW },
    {
      cand_boxes: io.candidates.boxes.buffer,
      cand_keys: io.candidates.keys.buffer,
      cand_group: io.candidates.group.buffer,
      kept: io.kept.buffer,
      kept_count: io.keptCount.buffer,
      boxes: out.boxes.buffer,
      result: out.result.buffer,
      labels: out.labels.buffer,
      orig_boxes: out.origBoxes.buffer,
    },
    [ceilDiv(p.maxDetections, kernel.workgroup[0])],
  ));
  return out;
}
