// CPU reference for shaders/l1_norms.wgsl: the L1 norm (sum of |w|, float64) of each of `count`
// consecutive segments of `size` values, per tensor. Li et al. 2017's filter score when a segment
// is one output filter [Cin][KH][KW]; the kernel-level score when it is one [KH][KW] kernel.

export function l1NormsRef(tensors: Array<{ data: ArrayLike<number>; size: number; count: number }>): Float64Array[] {
  return tensors.map((t) => {
    const out = new Float64Array(t.count);
    for (let s = 0; s < t.count; s++) {
      let sum = 0;
      for (let i = s * t.size; i < (s + 1) * t.size; i++) sum += Math.abs(t.data[i]);
      out[s] = sum;
    }
    return out;
  });
}
