// Image files to pixels in the browser. The pixels must be the file's own bytes, as the Node CLI
// decodes them, so that the page and `maskgpu segment` see the same input: no colour-space
// conversion (an sRGB-tagged or gamma-tagged PNG would otherwise be converted to the display's
// space). Opaque images come out byte for byte; semi-transparent pixels may be off by a rounding
// step, because a 2D canvas stores premultiplied alpha (the engine then drops alpha, as PIL's
// convert('RGB') does).

export interface Pixels {
  width: number;
  height: number;
  /** RGBA, row-major (canvas ImageData layout; the engine reads RGB from it). */
  data: Uint8ClampedArray;
  name: string;
}

/** Images above this are refused before decoding (a phone photo is ~12 MP). */
export const MAX_MEGAPIXELS = 50;

export async function decodeImage(blob: Blob, name: string): Promise<Pixels> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    throw new Error(`could not decode '${name}' (${blob.type || 'unknown type'}, ${blob.size} bytes): not an image this browser reads; use a PNG or JPEG`);
  }
  const { width, height } = bitmap;
  if (width * height > MAX_MEGAPIXELS * 1e6) {
    bitmap.close();
    throw new Error(`'${name}' is ${width}x${height} (${((width * height) / 1e6).toFixed(0)} MP); the demo takes up to ${MAX_MEGAPIXELS} MP, scale it down first`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const g = canvas.getContext('2d', { willReadFrequently: true });
  if (!g) throw new Error('this browser gave no 2D canvas context to read the image pixels');
  g.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { width, height, data: g.getImageData(0, 0, width, height).data, name };
}

export async function fetchImage(url: string): Promise<Pixels> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`could not load ${url}: HTTP ${response.status}`);
  return decodeImage(await response.blob(), url.split('/').pop() ?? url);
}
