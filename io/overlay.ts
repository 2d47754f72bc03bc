// io/overlay.ts (Node-only io/ library; the browser bundle must not import io/): the picture
// `maskgpu segment` writes next to its JSON: the input image with every detection's
// mask tinted in its instance colour, a 2-pixel box outline in the same colour, and a
// "name 0.97" tag in that colour above the box. Layers are drawn masks, then boxes, then labels,
// each in ascending score order, so a higher-scoring instance is never hidden by a lower one.

import type { RleMask } from '../engine/rle.ts';
import { instanceColor, textColorOn } from '../engine/palette.ts';
import { drawText, fillRect, textSize } from './font.ts';
import type { RgbImage } from './image.ts';

export interface OverlayDetection {
  box: [number, number, number, number];
  label: number;
  labelName: string;
  score: number;
  mask?: RleMask;
}

export interface OverlayOptions {
  /** Weight of the instance colour in a mask pixel (0 = invisible, 1 = opaque). Default 0.45. */
  alpha?: number;
}

type Rgb = [number, number, number];

const BOX_THICKNESS = 2;
const TAG_PADDING = 2; // unscaled pixels around the label text

/** Whole pixels covered by a float box, clipped to the image; undefined if nothing is left. */
function pixelRect(img: RgbImage, box: readonly number[]): [number, number, number, number] | undefined {
  if (box.length !== 4 || !box.every(Number.isFinite)) return undefined;
  const x0 = Math.max(0, Math.floor(Math.min(box[0], box[2])));
  const y0 = Math.max(0, Math.floor(Math.min(box[1], box[3])));
  // A box [x1, x2) ends at pixel ceil(x2) - 1; a zero-width box still gets its one pixel.
  const x1 = Math.min(img.width - 1, Math.max(x0, Math.ceil(Math.max(box[0], box[2])) - 1));
  const y1 = Math.min(img.height - 1, Math.max(y0, Math.ceil(Math.max(box[1], box[3])) - 1));
  if (x0 > x1 || y0 > y1) return undefined;
  return [x0, y0, x1, y1];
}

/** Blends `color` into every foreground pixel of the mask, walking its runs (no decoding). */
function tintMask(img: RgbImage, mask: RleMask, color: Rgb, alpha: number, what: string): void {
  const [h, w] = mask.size;
  if (h !== img.height || w !== img.width) {
    throw new Error(`renderOverlay: ${what} has a ${h}x${w} mask (size is [height, width]) but the image is ${img.height}x${img.width}`);
  }
  const keep = 1 - alpha;
  const add = color.map((c) => c * alpha);
  const total = h * w;
  let p = 0; // column-major pixel index
  for (let k = 0; k < mask.counts.length && p < total; k++) {
    const n = mask.counts[k];
    if (k & 1) {
      const end = Math.min(total, p + n);
      let x = Math.floor(p / h);
      let y = p - x * h;
      for (let j = p; j < end; j++) {
        const i = (y * w + x) * 3;
        img.data[i] = Math.round(img.data[i] * keep + add[0]);
        img.data[i + 1] = Math.round(img.data[i + 1] * keep + add[1]);
        img.data[i + 2] = Math.round(img.data[i + 2] * keep + add[2]);
        if (++y === h) {
          y = 0;
          x++;
        }
      }
    }
    p += n;
  }
}

function drawBoxOutline(img: RgbImage, rect: [number, number, number, number], color: Rgb): void {
  const [x0, y0, x1, y1] = rect;
  const t = BOX_THICKNESS;
  fillRect(img, x0, y0, x1 + 1, Math.min(y0 + t, y1 + 1), color); // top
  fillRect(img, x0, Math.max(y1 + 1 - t, y0), x1 + 1, y1 + 1, color); // bottom
  fillRect(img, x0, y0, Math.min(x0 + t, x1 + 1), y1 + 1, color); // left
  fillRect(img, Math.max(x1 + 1 - t, x0), y0, x1 + 1, y1 + 1, color); // right
}

/** Text scale that keeps labels readable: 1 up to ~600 px on the short side, then growing. */
export function labelScale(img: RgbImage): number {
  return Math.max(1, Math.round(Math.min(img.width, img.height) / 600));
}

function drawLabel(img: RgbImage, rect: [number, number, number, number], text: string, color: Rgb, scale: number): void {
  const pad = TAG_PADDING * scale;
  const size = textSize(text, scale);
  const tagW = size.width + 2 * pad;
  const tagH = size.height + 2 * pad;
  // Above the box; inside its top edge when there is no room above.
  let tagY = rect[1] - tagH;
  if (tagY < 0) tagY = rect[1];
  tagY = Math.max(0, Math.min(tagY, img.height - tagH));
  const tagX = Math.max(0, Math.min(rect[0], img.width - tagW));
  fillRect(img, tagX, tagY, tagX + tagW, tagY + tagH, color);
  drawText(img, tagX + pad, tagY + pad, text, textColorOn(color), scale);
}

/** Formats the tag text: the class name (or "class N" without one) and the score to 2 decimals. */
export function labelText(d: OverlayDetection): string {
  const name = d.labelName && d.labelName.length > 0 ? d.labelName : `class ${d.label}`;
  return `${name} ${d.score.toFixed(2)}`;
}

/**
 * Returns a new image with the detections drawn over a copy of `img`. Detection i gets
 * instanceColor(i), so colours follow the order of the detection list. Masks must be the image's
 * size ([height, width]).
 */
export function renderOverlay(img: RgbImage, detections: readonly OverlayDetection[], options: OverlayOptions = {}): RgbImage {
  const alpha = options.alpha ?? 0.45;
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`renderOverlay: alpha must be in [0, 1], got ${alpha}`);
  const out: RgbImage = { width: img.width, height: img.height, data: img.data.slice() };
  const order = detections.map((d, i) => ({ d, i, color: instanceColor(i) as Rgb }));
  order.sort((a, b) => a.d.score - b.d.score || b.i - a.i); // ascending score: best drawn last
  for (const { d, i, color } of order) if (d.mask) tintMask(out, d.mask, color, alpha, `detection ${i} (${labelText(d)})`);
  const rects = order.map(({ d }) => pixelRect(out, d.box));
  order.forEach(({ color }, k) => {
    const rect = rects[k];
    if (rect) drawBoxOutline(out, rect, color);
  });
  const scale = labelScale(out);
  order.forEach(({ d, color }, k) => {
    const rect = rects[k];
    if (rect) drawLabel(out, rect, labelText(d), color, scale);
  });
  return out;
}
