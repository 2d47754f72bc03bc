// Calibration options (prune()'s `calibration`), their defaults and validation, and the error
// every calibration failure raises (it names the image or layer and says what to do; prune()
// returns nothing when it is thrown, so the CLI writes nothing).

/** An unlabeled image: RGB (3 bytes a pixel) or RGBA (4, alpha ignored), any size. */
export interface CalibrationImage {
  width: number;
  height: number;
  data: Uint8Array | Uint8ClampedArray;
  /** Shown in error messages (e.g. the file name). */
  name?: string;
}

export type CalibrationMode = 'stats' | 'lsq' | 'stats+lsq';
export const CALIBRATION_MODES: readonly CalibrationMode[] = ['stats', 'lsq', 'stats+lsq'];

export interface CalibrationOptions {
  /** Unlabeled images, preprocessed and resized as inference does (min/max size from the weights' metadata). */
  images: CalibrationImage[];
  /** Use the first `count` images (default: all); fewer images than this is an error. */
  count?: number;
  /**
   * 'stats': re-estimate the ResNet body's BatchNorm statistics (precise BN, train mode);
   * 'lsq': least-squares reconstruction of the layers whose channels changed, against the
   * unpruned network; 'stats+lsq': both, in that order. Default: 'stats+lsq' (what measures
   * best: results/pruning.md) where the least squares apply (compact mode, filter granularity),
   * else 'stats'.
   */
  mode?: CalibrationMode;
  /** Least-squares settings (modes 'lsq' and 'stats+lsq'). */
  leastSquares?: {
    /** Use only the first N images for the refits (default 16, as far as `maxBytes` allows). */
    images?: number;
    /** Ridge, relative to the mean squared feature (prune/ridge.ts). Default 1e-3. */
    ridge?: number;
    /** Most bytes of activations kept on the GPU between passes (both networks, all images). Default 1 GiB. */
    maxBytes?: number;
    /** Output positions per image and layer in the fit (evenly spaced). Default 1024. */
    positions?: number;
    /** Also refit the RPN and RoI heads (prune/leastSquaresHeads.ts). Default true. */
    heads?: boolean;
    /** The unpruned model's best proposals (box head) and detections (mask head) per image the heads are fitted on. Default 128 and 16. */
    boxRois?: number;
    maskRois?: number;
  };
  /** Called as work progresses: phase name, units done, units in the phase. */
  onProgress?: (phase: string, done: number, total: number) => void;
}

export interface ResolvedCalibration {
  images: CalibrationImage[];
  /** undefined: the default for the pruning mode (prune/calibration.ts). */
  mode: CalibrationMode | undefined;
  leastSquares: { images: number; ridge: number; maxBytes: number; positions: number; heads: boolean; boxRois: number; maskRois: number };
  onProgress: (phase: string, done: number, total: number) => void;
}

export class CalibrationError extends Error {
  override name = 'CalibrationError';
}

/** A non-finite result: nothing is written. */
export function nonFinite(what: string): CalibrationError {
  return new CalibrationError(
    `${what}: calibration stopped and nothing was written. The weights or the calibration images give non-finite activations; check that the unpruned model runs on these images (maskgpu segment)`,
  );
}

export function imageName(image: CalibrationImage, index: number): string {
  return image?.name ? `calibration image '${image.name}'` : `calibration image ${index}`;
}

export function resolveCalibration(o: CalibrationOptions): ResolvedCalibration {
  if (!o || !Array.isArray(o.images)) throw new CalibrationError('calibration.images must be an array of unlabeled images ({ width, height, data: RGB or RGBA bytes })');
  if (o.images.length === 0) throw new CalibrationError('calibration needs at least one image; none were given');
  const mode = o.mode;
  if (mode !== undefined && !CALIBRATION_MODES.includes(mode)) throw new CalibrationError(`calibration mode is '${mode}': use one of ${CALIBRATION_MODES.join(', ')}`);
  let count = o.images.length;
  if (o.count !== undefined) {
    if (!Number.isSafeInteger(o.count) || o.count < 1) throw new CalibrationError(`calibration count is ${o.count}: it must be a positive integer`);
    if (o.count > o.images.length) {
      throw new CalibrationError(`calibration asks for ${o.count} images but only ${o.images.length} were given: give more images or ask for fewer`);
    }
    count = o.count;
  }
  const images = o.images.slice(0, count);
  images.forEach((im, i) => {
    const { width, height, data } = im ?? ({} as CalibrationImage);
    if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1) {
      throw new CalibrationError(`${imageName(im, i)}: size ${width}x${height} is not a positive integer size`);
    }
    if (!data || (data.length !== width * height * 3 && data.length !== width * height * 4)) {
      throw new CalibrationError(`${imageName(im, i)}: ${data?.length} bytes of pixels; a ${width}x${height} image needs ${width * height * 3} (RGB) or ${width * height * 4} (RGBA)`);
    }
  });
  const ls = o.leastSquares ?? {};
  if (ls.images !== undefined && !(Number.isSafeInteger(ls.images) && ls.images >= 1)) throw new CalibrationError(`leastSquares.images is ${ls.images}: it must be a positive integer`);
  if (ls.ridge !== undefined && !(ls.ridge >= 0 && Number.isFinite(ls.ridge))) throw new CalibrationError(`leastSquares.ridge is ${ls.ridge}: it must be a finite number >= 0`);
  if (ls.maxBytes !== undefined && !(ls.maxBytes > 0)) throw new CalibrationError(`leastSquares.maxBytes is ${ls.maxBytes}: it must be positive`);
  if (ls.positions !== undefined && !(Number.isSafeInteger(ls.positions) && ls.positions >= 1)) throw new CalibrationError(`leastSquares.positions is ${ls.positions}: it must be a positive integer`);
  const leastSquares = { images: Math.min(ls.images ?? 16, images.length), ridge: ls.ridge ?? 1e-3, maxBytes: ls.maxBytes ?? 2 ** 30, positions: ls.positions ?? 1024, heads: ls.heads ?? true, boxRois: ls.boxRois ?? 128, maskRois: ls.maskRois ?? 16 };
  for (const k of ['boxRois', 'maskRois'] as const) {
    if (!(Number.isSafeInteger(leastSquares[k]) && leastSquares[k] >= 1)) throw new CalibrationError(`leastSquares.${k} is ${ls[k]}: it must be a positive integer`);
  }
  return { images, mode, leastSquares, onProgress: o.onProgress ?? (() => {}) };
}
