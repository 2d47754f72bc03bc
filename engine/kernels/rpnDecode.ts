// rpnDecode (shaders/rpn_decode.wgsl): one level's top-k anchors -> clipped, size-filtered
// proposal candidates with sigmoid scores as sort keys and the level as NMS group.

import source from '../../shaders/rpn_decode.wgsl';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { ceilDiv, Dispatch } from './dispatch.ts';

/**
 * NMS candidates (RPN proposals or box-head detections), one row per candidate: boxes [n, 4]
 * x1 y1 x2 y2, keys [n] the sort key (score), group [n] (u32: RPN level or class), valid [n] (u32,
 * 0 = filtered out).
 */
export interface Candidates {
  boxes: Tensor;
  keys: Tensor;
  group: Tensor;
  valid: Tensor;
}

/** Pooled candidate arrays for `n` rows. */
export function candidateTensors(rec: Recorder, label: string, n: number): Candidates {
  return {
    boxes: rec.tensor(`${label}.boxes`, [n, 4]),
    keys: rec.tensor(`${label}.keys`, [n]),
    group: rec.tensor(`${label}.group`, [n]),
    valid: rec.tensor(`${label}.valid`, [n]),
  };
}

export interface RpnLevelDecode {
  k: number;
  offset: number;
  level: number;
  anchors: number;
  h: number;
  w: number;
  strideH: number;
  strideW: number;
  imageH: number;
  imageW: number;
  minSize: number;
  scoreThresh: number;
}

/** log(1000 / 16) as float32, torchvision's bbox_xform_clip. */
export const BBOX_XFORM_CLIP = Math.fround(Math.log(1000 / 16));

/**
 * Records the decode of one level's top-k (logits and indices in (y, x, a) order) against its
 * anchors (`cell`: [A, 4] cell anchors, shifted by the level's stride) into rows
 * [offset, offset + k) of `candidates` (shared by all levels); returns `candidates`.
 */
export function recordRpnDecode(
  rec: Recorder,
  p: RpnLevelDecode,
  io: { topLogits: Tensor; topIndex: Tensor; deltas: Tensor; cell: Tensor },
  candidates: Candidates,
  label = 'rpnDecode',
): Candidates {
  const ctx = rec.ctx;
  if (candidates.keys.shape[0] < p.offset + p.k) throw new Error(`${label}: rows ${p.offset}..${p.offset + p.k} do not fit ${candidates.keys.shape[0]} candidates`);
  const kernel = ctx.kernel({ source, label });
  rec.record(Dispatch.create(
    ctx,
    kernel,
    {
      k: p.k,
      offset: p.offset,
      level: p.level,
      anchors: p.anchors,
      h: p.h,
      w: p.w,
      stride_h: p.strideH,
      stride_w: p.strideW,
      image_h: p.imageH,
      image_w: p.imageW,
      min_size: p.minSize,
      score_thresh: p.scoreThresh,
      clip: BBOX_XFORM_CLIP,
    },
    {
      top_logits: io.topLogits.buffer,
      top_index: io.topIndex.buffer,
      deltas: io.deltas.buffer,
      cell: io.cell.buffer,
      cand_boxes: candidates.boxes.buffer,
      cand_keys: candidates.keys.buffer,
      cand_group: candidates.group.buffer,
      cand_valid: candidates.valid.buffer,
    },
    [ceilDiv(p.k, kernel.workgroup[0])],
  ));
  return candidates;
}
