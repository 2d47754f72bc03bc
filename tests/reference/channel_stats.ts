// float64 reference for shaders/channel_stats.wgsl: torch.nn.functional.batch_norm in training
// mode normalises channel c of an NCHW tensor with mean = sum(x) / n and the biased variance
// sum((x - mean)^2) / n over the n = N * H * W values of that channel (two passes, float64).

export function channelStatsRef(x: ArrayLike<number>, batch: number, channels: number, plane: number): Float64Array {
  const out = new Float64Array(2 * channels);
  const n = batch * plane;
  for (let c = 0; c < channels; c++) {
    let sum = 0;
    for (let b = 0; b < batch; b++) for (let p = 0; p < plane; p++) sum += x[(b * channels + c) * plane + p];
    const mean = sum / n;
    let sq = 0;
    for (let b = 0; b < batch; b++)
      for (let p = 0; p < plane; p++) {
        const d = x[(b * channels + c) * plane + p] - mean;
        sq += d * d;
      }
    out[2 * c] = mean;
    out[2 * c + 1] = sq / n;
  }
  return out;
}
