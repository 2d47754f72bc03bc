// Half-precision floats: IEEE 754 binary16 (f16) and bfloat16 (bf16) to and from float32. Decoding
// is exact (every f16 and bf16 value is representable in f32); encoding to f16 rounds to nearest,
// ties to even. Used by the safetensors reader and writer (F16/BF16 tensors) and by the conv
// kernel's f16 weight packing (engine/kernels/conv2d.ts). Browser-safe.

let f16Table: Float32Array | undefined;

/** All 65536 half-precision values, decoded exactly (every f16 is representable in f32). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 31) t[h] = mant ? NaN : sign * Infinity;
    else t[h] = sign * (1024 + mant) * 2 ** (exp - 25);
  }
  f16Table = t;
  return t;
}

/** Exact half -> float conversion of one 16-bit pattern. */
export function halfToFloat(bits: number): number {
  return halfTable()[bits & 0xffff];
}

/** Decodes `out.length` little-endian f16 values from the start of `view` into `out`, exactly. */
export function decodeF16(view: DataView, out: Float32Array): void {
  const table = halfTable();
  for (let i = 0; i < out.length; i++) out[i] = table[view.getUint16(2 * i, true)];
}

/** Decodes `out.length` little-endian bf16 values from the start of `view` into `out`, exactly. */
export function decodeBf16(view: DataView, out: Float32Array): void {
  // bfloat16 is the top half of a float32: shifting the bits back is exact (NaN payloads too).
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < out.length; i++) bits[i] = view.getUint16(2 * i, true) << 16;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 -> IEEE half bits, round to nearest, ties to even; overflow -> inf, NaN stays NaN. */
export function floatToHalf(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Half subnormal: value / 2^-24 = mant24 >> (14 - e). Below 2^-25 everything rounds to 0.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && h & 1)) h++;
    return sign | h;
  }
  // A carry out of the mantissa bumps the exponent, and past 65504 lands exactly on inf.
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}
