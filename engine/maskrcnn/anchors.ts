// torchvision AnchorGenerator (anchor_utils.py), for one image: cell anchors per level computed
// in float32 and rounded half-to-even like torch.round, and per-level strides as
// padded_size // grid_size (integer division: the "pool" level of an 800-row input gets 61).

const f = Math.fround;

/** Round half to even, like torch.round. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** [A][4] cell anchors (x1, y1, x2, y2) for one size and the aspect ratios (h / w). */
export function cellAnchors(size: number, ratios: readonly number[] = [0.5, 1, 2]): Float32Array {
  const out = new Float32Array(ratios.length * 4);
  ratios.forEach((r, a) => {
    const hRatio = f(Math.sqrt(f(r)));
    const wRatio = f(1 / hRatio);
    const ws = f(wRatio * size);
    const hs = f(hRatio * size);
    out.set([-ws, -hs, ws, hs].map((v) => roundHalfEven(f(v / 2))), a * 4);
  });
  return out;
}

export function levelStrides(paddedH: number, paddedW: number, grids: Array<{ h: number; w: number }>): Array<{ h: number; w: number }> {
  return grids.map((g) => ({ h: Math.floor(paddedH / g.h), w: Math.floor(paddedW / g.w) }));
}

export const DEFAULT_ANCHOR_SIZES = [32, 64, 128, 256, 512];
export const DEFAULT_ASPECT_RATIOS = [0.5, 1, 2];
