// Deterministic per-instance colours for overlays: a golden-ratio walk around the hue circle
// (consecutive instances land far apart, and no two of the first ~30 are close), with
// saturation and value alternating on a short cycle so that neighbours that do land near in hue
// still differ in lightness. Every colour is saturated and bright enough to read as a tint on
// photographs; text drawn on it picks black or white by luminance (see textColorOn).

const GOLDEN_RATIO_CONJUGATE = 0.618033988749895;
const HUE_START = 0.08; // begins at a warm orange rather than pure red
const SATURATIONS = [0.85, 0.65, 0.95];
const VALUES = [0.95, 0.8];

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const sector = Math.floor(h * 6);
  const f = h * 6 - sector;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const rgb: [number, number, number][] = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ];
  const [r, g, b] = rgb[((sector % 6) + 6) % 6];
  return [Math.round(r * 255), Math.round(g * 255), Math.round(b * 255)];
}

/** Colour of instance i (0-based; any integer, the same i always gives the same colour). */
export function instanceColor(i: number): [number, number, number] {
  const n = Math.trunc(i);
  const hue = (((HUE_START + n * GOLDEN_RATIO_CONJUGATE) % 1) + 1) % 1;
  const s = SATURATIONS[((n % SATURATIONS.length) + SATURATIONS.length) % SATURATIONS.length];
  const v = VALUES[((n % VALUES.length) + VALUES.length) % VALUES.length];
  return hsvToRgb(hue, s, v);
}

/** Black or white, whichever reads better on `background` (Rec. 709 relative luminance). */
export function textColorOn(background: readonly [number, number, number]): [number, number, number] {
  const [r, g, b] = background;
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return luminance > 140 ? [0, 0, 0] : [255, 255, 255];
}
