// Normal equations of a least-squares layer fit, accumulated: G[i][j] += sum_q R[i][q] * R[j][q]
// for i < F, j < F + M, with R the transposed design matrix [X | 1 | T] (design_matrix.wgsl: one
// row per feature, the intercept, then the targets; one column per output position). So G =
// [X^T X | X^T T] with X the positions x features matrix: He et al. 2017's refit of a pruned
// layer's weights so that its output on the pruned network's input matches the unpruned
// network's output. Every dispatch adds its sums to G (float32), so G accumulates over position
// chunks and images.
//
// Register-blocked like matmul.wgsl (an invocation owns a TM x TN block of G, no workgroup
// memory: fastest on CPU adapters), both operands read as vec4s along the positions (R's rows
// are padded with zeros to a multiple of 4). Blocks entirely below the diagonal of the symmetric
// X^T X part are skipped: the CPU mirrors the upper triangle.

const TM: u32 = 8u;
const TN: u32 = 8u;
const WG_X: u32 = 4u;   // invocations along j
const WG_Y: u32 = 4u;   // invocations along i

struct Params {
  features: u32,  // F: rows of G
  columns: u32,   // F + M: columns of G
  pitch4: u32,    // R's row length in vec4s
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> design: array<vec4<f32>>;  // [F + M][pitch4]
@group(0) @binding(2) var<storage, read_write> gram: array<f32>;     // [F][F + M]

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j0 = gid.x * TN;
  let i0 = gid.y * TM;
  if (i0 >= params.features || j0 >= params.columns) {
    return;
  }
  // Entirely below the diagonal of X^T X: the mirror of a block computed elsewhere.
  if (j0 + TN <= i0) {
    return;
  }
  // Rows past the edge are clamped (computed, not stored) so the loop has no tests.
  var a_row: array<u32, TM>;
  for (var a = 0u; a < TM; a++) {
    a_row[a] = min(i0 + a, params.features - 1u) * params.pitch4;
  }
  var b_row: array<u32, TN>;
  for (var b = 0u; b < TN; b++) {
    b_row[b] = min(j0 + b, params.columns - 1u) * params.pitch4;
  }
  var acc = array<array<f32, TN>, TM>();
  for (var q = 0u; q < params.pitch4; q++) {
    var bv: array<vec4<f32>, TN>;
    for (var b = 0u; b < TN; b++) {
      bv[b] = design[b_row[b] + q];
    }
    for (var a = 0u; a < TM; a++) {
      let av = design[a_row[a] + q];
      for (var b = 0u; b < TN; b++) {
        acc[a][b] += dot(av, bv[b]);
      }
    }
  }
  for (var a = 0u; a < TM; a++) {
    let i = i0 + a;
    if (i >= params.features) {
      break;
    }
    for (var b = 0u; b < TN; b++) {
      let j = j0 + b;
      if (j < params.columns) {
        gram[i * params.columns + j] += acc[a][b];
      }
    }
  }
}
