// Loading the golden fixtures made by tools/make_golden.py (torchvision 0.14.1 on a narrow model
// with the exact ResNet-50-FPN structure and seeded random weights).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodePng, type RgbImage } from '../io/image.ts';
import { loadMaskRCNNWeights, maskrcnnParseOptions, type MaskRCNNWeights } from '../weights-loader/maskrcnn.ts';
import { parseSafetensors, type Tensor } from '../weights-loader/safetensors.ts';

const dir = fileURLToPath(new URL('./fixtures/golden/', import.meta.url));

export interface GoldenDetection {
  box: [number, number, number, number];
  label: number;
  score: number;
  mask: { size: [number, number]; counts: number[] };
}

export interface GoldenCase {
  name: string;
  image: RgbImage;
  tensors: Map<string, Tensor>;
  json: { resized: [number, number]; padded: [number, number]; detections: GoldenDetection[] } & Record<string, unknown>;
}

export const GOLDEN_CASES = [0, 1, 2];
/** Cases whose input tensor and FPN maps are stored (the others keep the fixtures small). */
export const FEATURE_CASES = [0];

export function goldenWeights(): MaskRCNNWeights {
  return loadMaskRCNNWeights(parseSafetensors(new Uint8Array(readFileSync(`${dir}model.safetensors`)), maskrcnnParseOptions));
}

export function goldenWeightBytes(): Uint8Array {
  return new Uint8Array(readFileSync(`${dir}model.safetensors`));
}

export function goldenCase(i: number): GoldenCase {
  const image = decodePng(new Uint8Array(readFileSync(`${dir}image_${i}.png`)), `image_${i}.png`);
  const tensors = parseSafetensors(new Uint8Array(readFileSync(`${dir}golden_${i}.safetensors`))).tensors;
  const json = JSON.parse(readFileSync(`${dir}golden_${i}.json`, 'utf8'));
  return { name: `image_${i}`, image, tensors, json };
}
