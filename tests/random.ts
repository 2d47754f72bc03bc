// Seeded random data so every failure reproduces: mulberry32 + Box-Muller.

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [lo, hi). */
export function uniform(seed: number, count: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/** Normal values with the given standard deviation (He-like scales keep conv outputs O(1)). */
export function normal(seed: number, count: number, std = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const u = Math.max(r(), 1e-12);
    const v = r();
    const mag = std * Math.sqrt(-2 * Math.log(u));
    out[i] = mag * Math.cos(2 * Math.PI * v);
    if (i + 1 < count) out[i + 1] = mag * Math.sin(2 * Math.PI * v);
  }
  return out;
}
