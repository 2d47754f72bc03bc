// Hand-made safetensors bytes for loader tests: any header (object, or raw text that can hold
// duplicate keys), any data, and a declared header length that can lie.

export function rawFile(header: string | object, data: Uint8Array | number = 0, declaredLen?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(declaredLen ?? json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}
