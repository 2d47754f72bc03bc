// float64 references: matmul C = A B (B [K][N] or, transposed, [N][K]), torch.nn.Linear
// (y = x W^T + b, W [out][in]) with optional ReLU, and torch.sigmoid.

export function matmulRef(
  m: number,
  n: number,
  k: number,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  opts: { transB?: boolean; bias?: ArrayLike<number>; relu?: boolean } = {},
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = opts.bias ? opts.bias[j] : 0;
      for (let t = 0; t < k; t++) s += a[i * k + t] * (opts.transB ? b[j * k + t] : b[t * n + j]);
      c[i * n + j] = opts.relu ? Math.max(0, s) : s;
    }
  return c;
}

export function linearRef(
  rows: number,
  inF: number,
  outF: number,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  bias: ArrayLike<number> | undefined,
  relu: boolean,
): Float64Array {
  return matmulRef(rows, outF, inF, x, w, { transB: true, bias, relu });
}

export function sigmoidRef(x: ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = 1 / (1 + Math.exp(-x[i]));
  return out;
}
