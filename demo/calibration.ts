// The demo's calibration images: the bundled samples (fetched once, when calibration is first
// asked for) and every image the user opened in the page, in that order. Unlabeled: prune()'s
// calibration only re-estimates BatchNorm statistics on them.

import { fetchImage, type Pixels } from './image.ts';

export class CalibrationSet {
  private readonly opened: Pixels[] = [];
  private samples?: Pixels[];

  constructor(private readonly sampleNames: readonly string[]) {}

  /** Remembers an image the user opened. */
  add(image: Pixels): void {
    this.opened.push(image);
  }

  async images(): Promise<Pixels[]> {
    this.samples ??= await Promise.all(this.sampleNames.map((n) => fetchImage(`models/samples/${n}.png`)));
    return [...this.samples, ...this.opened];
  }
}
