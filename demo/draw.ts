// Draws detections over the image: masks as translucent per-instance tints (blended at image
// resolution straight from the COCO RLE runs, so the cost is the mask area, not detections x
// pixels), then boxes and "label score" tags at display resolution so text stays crisp.
// Colours come from the library's instanceColor(index in the result), so a detection keeps its
// colour while the score threshold changes which ones are shown.

import { instanceColor, type Detection } from '../index.ts';
import type { Pixels } from './image.ts';

const MASK_ALPHA = 0.45;
/** Longest side the canvas is drawn at; small images are scaled up (at most 4x) to stay readable. */
const DISPLAY_LONG_SIDE = 800;

/** Black or white, whichever reads better on the tag's colour (Rec. 709 luminance). */
function textOn([r, g, b]: [number, number, number]): string {
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 ? '#000' : '#fff';
}

/** Tints the pixels under each mask; RLE runs are column-major and start with a background run. */
function blendMasks(out: Uint8ClampedArray, width: number, height: number, shown: Array<{ d: Detection; index: number }>): void {
  for (const { d, index } of shown) {
    const [r, g, b] = instanceColor(index);
    let pos = 0;
    d.mask.counts.forEach((run, k) => {
      if (k & 1) {
        for (let j = pos; j < pos + run; j++) {
          const x = Math.floor(j / height);
          const p = 4 * ((j - x * height) * width + x);
          out[p] += MASK_ALPHA * (r - out[p]);
          out[p + 1] += MASK_ALPHA * (g - out[p + 1]);
          out[p + 2] += MASK_ALPHA * (b - out[p + 2]);
        }
      }
      pos += run;
    });
  }
}

/**
 * Draws `image` with the detections scoring at least `threshold` onto `canvas`; returns how many
 * were drawn. Lower scores are drawn first so the most confident mask ends on top.
 */
export function drawDetections(canvas: HTMLCanvasElement, image: Pixels, detections: Detection[], threshold: number): number {
  const { width, height } = image;
  const scale = Math.min(4, DISPLAY_LONG_SIDE / Math.max(width, height));
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const shown = detections.map((d, index) => ({ d, index })).filter(({ d }) => d.score >= threshold).reverse();

  const tinted = new ImageData(new Uint8ClampedArray(image.data), width, height);
  blendMasks(tinted.data, width, height, shown);
  const layer = new OffscreenCanvas(width, height);
  layer.getContext('2d')!.putImageData(tinted, 0, 0);

  const g = canvas.getContext('2d')!;
  g.imageSmoothingEnabled = scale < 1; // upscaled: keep pixels sharp, as the model saw them
  g.drawImage(layer, 0, 0, canvas.width, canvas.height);

  const font = Math.max(12, Math.round(Math.min(canvas.width, canvas.height) / 32));
  g.font = `600 ${font}px system-ui, sans-serif`;
  g.textBaseline = 'top';
  g.lineWidth = Math.max(2, font / 7);
  for (const { d, index } of shown) {
    const color = instanceColor(index);
    const [x1, y1, x2, y2] = d.box.map((v) => v * scale);
    g.strokeStyle = `rgb(${color.join(',')})`;
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const tag = `${d.labelName} ${d.score.toFixed(2)}`;
    const w = g.measureText(tag).width + font * 0.5;
    const h = font * 1.3;
    // Above the box when there is room, else just inside it; never past the right edge.
    const tx = Math.max(0, Math.min(x1, canvas.width - w));
    const ty = y1 - h >= 0 ? y1 - h : Math.min(y1, canvas.height - h);
    g.fillStyle = `rgb(${color.join(',')})`;
    g.fillRect(tx, ty, w, h);
    g.fillStyle = textOn(color);
    g.fillText(tag, tx + font * 0.25, ty + font * 0.15);
  }
  return shown.length;
}
