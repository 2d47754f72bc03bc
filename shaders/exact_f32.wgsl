// Exact float32 helpers shared by roi_align.wgsl and paste_masks.wgsl (prepended to both by
// their wrappers; WGSL has no includes). They reproduce torch's CPU float32 results where WGSL's
// own operations are looser: f32 division is not correctly rounded, and compilers may fuse a
// multiply into the next add (lavapipe's fma() is not fused either). Each user declares a
// `params` uniform with a field `zero` that is always 0.

// Hides x from the optimizer (XOR with a run-time zero) so a product feeding a sum is rounded on
// its own, as in torch, instead of being fused or simplified away.
fn separate(x: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) ^ params.zero);
}

// a rounded to 12 significant bits (Veltkamp-style split; a - split_hi(a) is exact, <= 12 bits).
fn split_hi(a: f32) -> f32 {
  return bitcast<f32>((bitcast<u32>(a) + 0x800u) & 0xfffff000u);
}

// Dekker's TwoProduct error: a * b = p + result exactly, for p = float32(a * b).
fn two_prod_err(a: f32, b: f32, p: f32) -> f32 {
  let ah = split_hi(a);
  let al = a - ah;
  let bh = split_hi(b);
  let bl = b - bh;
  return (((ah * bh - p) + ah * bl) + al * bh) + al * bl;
}

// IEEE (correctly rounded) a / b for b an integer below 2^16: one exact-residual correction step.
// Huge or non-finite quotients are returned as they are.
fn div_rn(a: f32, b: f32) -> f32 {
  let q = a / b;
  if (!(abs(q) < 1e30)) {
    return q;
  }
  let p = separate(q * b);
  let r = (a - p) - two_prod_err(q, b, p); // a - q*b, exact
  return q + r / b;
}
