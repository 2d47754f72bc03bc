// The CPU half of a least-squares layer refit: the normal equations G = [X^T X | X^T T] that
// shaders/normal_equations.wgsl accumulated (float32, upper triangle of X^T X) are mirrored,
// regularised and solved in float64 by Cholesky: for every target column m,
//   (X^T X + lambda D) w_m = X^T t_m,   D = diag(1, ..., 1, 0)  (the intercept is not shrunk),
//   lambda = ridge * mean(diag(X^T X)) over the non-intercept features,
// so `ridge` is relative to the features' scale. Features that are zero at every position (a
// removed input, a channel that never fires) get weight 0 from the ridge term. If the matrix is
// not positive definite in float64 (rank deficiency with a tiny ridge), lambda grows tenfold and
// the factorisation is retried.

export interface RidgeSolution {
  /** [M][F] weights, the intercept last in each row. */
  weights: Float64Array;
  lambda: number;
  /**
   * Per target: (residual sum of squares of the current weights - of the solution), from the
   * normal equations alone (t^T t cancels): how much the refit reduced the squared error.
   */
  gain: Float64Array;
  /** Positions the normal equations were accumulated over (the intercept's diagonal entry). */
  positions: number;
}

/** Mirrors G's upper triangle into a full F x F float64 X^T X. */
export function gramMatrix(g: ArrayLike<number>, features: number, columns: number): Float64Array {
  const a = new Float64Array(features * features);
  for (let i = 0; i < features; i++)
    for (let j = i; j < features; j++) {
      const v = g[i * columns + j];
      a[i * features + j] = v;
      a[j * features + i] = v;
    }
  return a;
}

/** In-place Cholesky A = L L^T (lower triangle of `a`); false if a pivot is not positive. */
export function cholesky(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0)) return false;
    const ljj = Math.sqrt(d);
    a[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / ljj;
    }
  }
  return true;
}

/** Solves L L^T x = b in place (L from cholesky). */
export function choleskySolve(l: Float64Array, n: number, b: Float64Array): void {
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= l[i * n + k] * b[k];
    b[i] = s / l[i * n + i];
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i];
    for (let k = i + 1; k < n; k++) s -= l[k * n + i] * b[k];
    b[i] = s / l[i * n + i];
  }
}

/**
 * Ridge solution of the normal equations `g` (F x (F + M), float32 as accumulated). `current`
 * ([M][F], optional) are the weights in use, for the reported gain.
 */
export function solveRidge(g: ArrayLike<number>, features: number, targets: number, ridge: number, current?: Float64Array): RidgeSolution {
  const columns = features + targets;
  const xtx = gramMatrix(g, features, columns);
  let diag = 0;
  for (let i = 0; i < features - 1; i++) diag += xtx[i * features + i];
  const scale = features > 1 ? diag / (features - 1) : 1;
  let lambda = ridge * (scale > 0 ? scale : 1);
  let l = new Float64Array(0);
  for (let attempt = 0; ; attempt++) {
    l = Float64Array.from(xtx);
    for (let i = 0; i < features - 1; i++) l[i * features + i] += lambda;
    // A model with no intercept signal at all (no positions) cannot be fitted.
    if (l[(features - 1) * features + features - 1] <= 0) throw new Error('least squares: no samples were accumulated');
    if (cholesky(l, features)) break;
    if (attempt === 12) throw new Error(`least squares: the normal equations stay singular up to ridge ${lambda}`);
    lambda = lambda > 0 ? lambda * 10 : 1e-12 * (scale > 0 ? scale : 1);
  }
  const weights = new Float64Array(targets * features);
  const gain = new Float64Array(targets);
  const b = new Float64Array(features);
  const quad = (w: ArrayLike<number>, off: number) => {
    // w^T (X^T X) w - 2 w^T X^T t: the residual up to t^T t.
    let q = 0;
    for (let i = 0; i < features; i++) {
      let s = 0;
      for (let j = 0; j < features; j++) s += xtx[i * features + j] * w[off + j];
      q += w[off + i] * s;
    }
    return q;
  };
  for (let m = 0; m < targets; m++) {
    for (let i = 0; i < features; i++) b[i] = g[i * columns + features + m];
    const rhs = Float64Array.from(b);
    choleskySolve(l, features, b);
    weights.set(b, m * features);
    if (current) {
      let lin0 = 0;
      let lin1 = 0;
      for (let i = 0; i < features; i++) {
        lin0 += current[m * features + i] * rhs[i];
        lin1 += b[i] * rhs[i];
      }
      gain[m] = quad(current, m * features) - 2 * lin0 - (quad(weights, m * features) - 2 * lin1);
    }
  }
  return { weights, lambda, gain, positions: xtx[features * features - 1] };
}
