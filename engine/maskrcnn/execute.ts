// Running a compiled Mask R-CNN plan: encode the recorded dispatches (one pass, or one pass per
// stage with GPU timestamps at its ends), copy the results (kept count, result rows, masks, the
// resolved timestamps) into the plan's mapped staging buffers, submit once, map and copy out.
// Without timestamp queries, profiling submits stage by stage and times each on the CPU.

import type { Dispatch } from '../kernels/dispatch.ts';
import type { ImageInput, ResizePlan } from '../kernels/preprocess.ts';
import type { Tensor } from '../planner.ts';
import type { Recorder } from '../recorder.ts';
import { STAGES, stagesFromTimestamps, TIMESTAMP_BYTES, TIMESTAMP_COUNT, type StagesMs } from './stages.ts';

/** The device's one query set for stage timestamps and the buffer they resolve into. */
export interface StageTimestamps {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
}

export interface GpuResults {
  header: Float32Array;
  bits: Uint32Array;
  stagesMs: StagesMs | null;
  stagesSource: 'gpu-timestamps' | 'cpu' | null;
}

/** What the read-back copies: the kept count, the result rows and the masks. */
export interface PlanOutputs {
  maxDetections: number;
  /** u32[1]: detections kept. */
  keptCount: Tensor;
  /** [max][6]: x1 y1 x2 y2 (original image), score, label. */
  result: Tensor;
  /** [max][height][ceil(width / 32)] u32: bit-packed binary masks, LSB first. */
  masks: Tensor;
}

export interface ImagePlan {
  resize: ResizePlan;
  rec: Recorder;
  /** The recorded dispatches split by stage, in STAGES order. */
  stages: Dispatch[][];
  /** The image's input buffers (one per band of rows when it exceeds a binding) and their upload. */
  image: ImageInput;
  outputs: PlanOutputs;
  headerStaging: GPUBuffer;
  maskStaging: GPUBuffer;
  headerBytes: number;
  /** Where the stage timestamps sit in headerStaging, after the header. */
  timestampOffset: number;
  maskBytes: number;
  /** Whether quick stand-ins replaced tuned kernels in this plan, and the context's kernel generation it was built at (engine/tiers.ts). */
  tiers: { standIns: boolean; generation: number; helped?: boolean };
}

/** Records and submits the plan and maps the results (one submit unless CPU-profiling). */
export async function executePlan(device: GPUDevice, plan: ImagePlan, ts: StageTimestamps | undefined, profile: boolean): Promise<GpuResults> {
  const copyResults = (encoder: GPUCommandEncoder) => {
    encoder.copyBufferToBuffer(plan.outputs.keptCount.buffer, 0, plan.headerStaging, 0, 4);
    encoder.copyBufferToBuffer(plan.outputs.result.buffer, 0, plan.headerStaging, 16, plan.headerBytes - 16);
    encoder.copyBufferToBuffer(plan.outputs.masks.buffer, 0, plan.maskStaging, 0, plan.maskBytes);
    if (ts) {
      encoder.resolveQuerySet(ts.querySet, 0, TIMESTAMP_COUNT, ts.resolve, 0);
      encoder.copyBufferToBuffer(ts.resolve, 0, plan.headerStaging, plan.timestampOffset, TIMESTAMP_BYTES);
    }
  };
  let cpuStages: StagesMs | null = null;
  if (ts || !profile) {
    const encoder = device.createCommandEncoder({ label: 'maskrcnn' });
    if (ts) {
      plan.stages.forEach((list, i) => {
        const timestampWrites = { querySet: ts.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
        const pass = encoder.beginComputePass({ label: `maskrcnn ${STAGES[i]}`, timestampWrites });
        plan.rec.encode(pass, list);
        pass.end();
      });
    } else {
      const pass = encoder.beginComputePass({ label: 'maskrcnn' });
      plan.rec.encode(pass);
      pass.end();
    }
    copyResults(encoder);
    device.queue.submit([encoder.finish()]);
  } else {
    // One submit per stage, each waited for: the time between completions is the stage's.
    const times: Partial<StagesMs> = {};
    let last = performance.now();
    for (const [i, list] of plan.stages.entries()) {
      const encoder = device.createCommandEncoder({ label: `maskrcnn ${STAGES[i]}` });
      const pass = encoder.beginComputePass({ label: `maskrcnn ${STAGES[i]}` });
      plan.rec.encode(pass, list);
      pass.end();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      const now = performance.now();
      times[STAGES[i]] = now - last;
      last = now;
    }
    cpuStages = times as StagesMs;
    const encoder = device.createCommandEncoder({ label: 'maskrcnn results' });
    copyResults(encoder);
    device.queue.submit([encoder.finish()]);
  }
  await Promise.all([plan.headerStaging.mapAsync(0x0001), plan.maskStaging.mapAsync(0x0001)]);
  const header = new Float32Array(plan.headerStaging.getMappedRange(0, plan.headerBytes).slice(0));
  const bits = new Uint32Array(plan.maskStaging.getMappedRange(0, plan.maskBytes).slice(0));
  const raw = ts ? new BigUint64Array(plan.headerStaging.getMappedRange(plan.timestampOffset, TIMESTAMP_BYTES).slice(0)) : undefined;
  plan.headerStaging.unmap();
  plan.maskStaging.unmap();
  const gpuStages = raw ? stagesFromTimestamps(raw) : null;
  if (gpuStages) return { header, bits, stagesMs: gpuStages, stagesSource: 'gpu-timestamps' };
  return { header, bits, stagesMs: cpuStages, stagesSource: cpuStages ? 'cpu' : null };
}
