// The demo page's address parameters (documented at the top of main.ts), read and checked in one
// place: a bad value is an error that names the parameter and what it accepts.

import type { MaskRCNNOptions } from '../index.ts';

export interface AddressParams {
  sample?: string;
  featureLevel?: 'core' | 'compatibility';
  modelOptions: MaskRCNNOptions;
  weightsUrl?: string;
  kernels?: string;
  autorun: boolean;
}

export function readAddressParams(search: string, samples: string[]): AddressParams {
  const params = new URLSearchParams(search);
  const sample = params.get('sample') ?? undefined;
  if (sample !== undefined && !samples.includes(sample)) throw new Error(`address parameter sample=${sample}: no such sample (${samples.join(', ')})`);
  const featureLevel = params.get('featureLevel');
  if (featureLevel !== null && featureLevel !== 'core' && featureLevel !== 'compatibility') throw new Error(`address parameter featureLevel=${featureLevel}: use core or compatibility`);
  const weightsUrl = params.get('weights') ?? undefined;
  if (weightsUrl !== undefined && weightsUrl.trim() === '') throw new Error('address parameter weights= is empty: give the URL of a .safetensors file');
  return {
    sample,
    featureLevel: featureLevel ?? undefined,
    modelOptions: {
      minSize: numberParam(params, 'minSize', true),
      maxSize: numberParam(params, 'maxSize', true),
      boxScoreThresh: numberParam(params, 'boxScoreThresh', false),
    },
    weightsUrl,
    kernels: params.get('kernels') ?? undefined,
    autorun: params.get('autorun') !== '0',
  };
}

function numberParam(params: URLSearchParams, name: string, integer: boolean): number | undefined {
  const v = params.get(name);
  if (v === null) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || x < 0 || (integer && !Number.isInteger(x))) {
    throw new Error(`address parameter ${name}=${v} must be a non-negative ${integer ? 'integer' : 'number'}`);
  }
  return x;
}
