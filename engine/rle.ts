// COCO uncompressed run-length encoding of binary masks, exactly as pycocotools' maskApi.c
// (rleEncode / rleDecode / rleArea / rleIou): pixels are walked in column-major (Fortran) order,
// `counts` alternates zero-run, one-run, ... and always starts with the zero run (0 when the
// first pixel is foreground); `size` is [height, width]. Browser-safe: no Node imports.

export interface RleMask {
  size: [number, number];
  counts: number[];
}

function checkSize(h: number, w: number): void {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 0 || w < 0) {
    throw new Error(`RLE size must be two non-negative integers [height, width], got [${h}, ${w}]`);
  }
}

/**
 * Run-length encodes a row-major h*w mask (nonzero = foreground). Like pycocotools, the counts
 * always end with the last run, so an empty (0-pixel) mask encodes as counts [0].
 */
export function encodeRle(mask: Uint8Array, h: number, w: number): RleMask {
  checkSize(h, w);
  if (mask.length !== h * w) throw new Error(`encodeRle: mask has ${mask.length} values, expected ${h}x${w} = ${h * w}`);
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0, i = x; y < h; y++, i += w) {
      const v = mask[i] !== 0 ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [h, w], counts };
}

/**
 * The same encoding from the bit-packed row-major layout the GPU writes: row y occupies words
 * bits[y*rowWords .. y*rowWords + ceil(w/32)), pixel x is bit (x & 31) of word (x >> 5), LSB first.
 * Bits past column w-1 in a row's last word are ignored. A 32-column stripe whose words are all
 * zero is emitted as one zero run without visiting its pixels, so a small object in a large
 * image costs about h*w/32 word reads instead of h*w bit reads.
 */
export function encodeRleFromBits(bits: Uint32Array, h: number, w: number, rowWords: number): RleMask {
  checkSize(h, w);
  const wordsNeeded = (w + 31) >>> 5;
  if (rowWords < wordsNeeded) throw new Error(`encodeRleFromBits: rowWords ${rowWords} cannot hold ${w} columns (needs ${wordsNeeded})`);
  if (h > 0 && bits.length < (h - 1) * rowWords + wordsNeeded) {
    throw new Error(`encodeRleFromBits: ${bits.length} words cannot hold ${h} rows of ${rowWords} words`);
  }
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let word = 0; word < wordsNeeded; word++) {
    const x0 = word << 5;
    const x1 = Math.min(w, x0 + 32);
    const validMask = x1 - x0 === 32 ? 0xffffffff : ((1 << (x1 - x0)) - 1) >>> 0;
    let any = false;
    for (let y = 0, i = word; y < h; y++, i += rowWords) {
      if ((bits[i] & validMask) !== 0) {
        any = true;
        break;
      }
    }
    if (!any) {
      if (current !== 0) {
        counts.push(run);
        run = 0;
        current = 0;
      }
      run += (x1 - x0) * h;
      continue;
    }
    for (let x = x0; x < x1; x++) {
      const shift = x & 31;
      for (let y = 0, i = word; y < h; y++, i += rowWords) {
        const v = (bits[i] >>> shift) & 1;
        if (v !== current) {
          counts.push(run);
          run = 0;
          current = v;
        }
        run++;
      }
    }
  }
  counts.push(run);
  return { size: [h, w], counts };
}

function checkRle(rle: RleMask, what: string): number {
  if (!rle || !Array.isArray(rle.size) || rle.size.length !== 2 || !Array.isArray(rle.counts)) {
    throw new Error(`${what}: expected { size: [h, w], counts: number[] } (COCO uncompressed RLE)`);
  }
  const [h, w] = rle.size;
  checkSize(h, w);
  let total = 0;
  for (const c of rle.counts) {
    if (!Number.isInteger(c) || c < 0) throw new Error(`${what}: counts must be non-negative integers, found ${c}`);
    total += c;
  }
  if (total !== h * w) throw new Error(`${what}: counts sum to ${total}, but size ${h}x${w} has ${h * w} pixels`);
  return total;
}

/** Decodes to a row-major h*w mask of 0/1. Throws if the counts do not cover exactly h*w pixels. */
export function decodeRle(rle: RleMask): Uint8Array {
  checkRle(rle, 'decodeRle');
  const [h, w] = rle.size;
  const out = new Uint8Array(h * w);
  let p = 0; // column-major position
  for (let k = 0; k < rle.counts.length; k++) {
    const n = rle.counts[k];
    if (k & 1) {
      for (let j = p; j < p + n; j++) {
        const x = Math.floor(j / h);
        out[(j - x * h) * w + x] = 1;
      }
    }
    p += n;
  }
  return out;
}

/** Foreground pixel count: the sum of the odd-indexed (one-run) counts. */
export function rleArea(rle: RleMask): number {
  let area = 0;
  for (let k = 1; k < rle.counts.length; k += 2) area += rle.counts[k];
  return area;
}

/**
 * Intersection over union of two masks of the same size, by merging their runs (no decoding).
 * As pycocotools' rleIou (non-crowd): 0 when the intersection is empty, including two empty masks.
 */
export function rleIou(a: RleMask, b: RleMask): number {
  checkRle(a, 'rleIou (first mask)');
  checkRle(b, 'rleIou (second mask)');
  if (a.size[0] !== b.size[0] || a.size[1] !== b.size[1]) {
    throw new Error(`rleIou: masks differ in size, ${a.size[0]}x${a.size[1]} vs ${b.size[0]}x${b.size[1]}`);
  }
  let intersection = 0;
  // Walk both run lists in step: each iteration consumes the shorter remaining run.
  let ia = 0;
  let ib = 0;
  let leftA = a.counts.length ? a.counts[0] : 0;
  let leftB = b.counts.length ? b.counts[0] : 0;
  while (ia < a.counts.length && ib < b.counts.length) {
    if (leftA === 0) {
      leftA = a.counts[++ia] ?? 0;
      continue;
    }
    if (leftB === 0) {
      leftB = b.counts[++ib] ?? 0;
      continue;
    }
    const step = Math.min(leftA, leftB);
    if (ia & 1 && ib & 1) intersection += step;
    leftA -= step;
    leftB -= step;
  }
  if (intersection === 0) return 0;
  return intersection / (rleArea(a) + rleArea(b) - intersection);
}
