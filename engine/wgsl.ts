// Reads what a kernel wrapper needs straight from the WGSL source, so TypeScript cannot drift from
// the shader: compile-time constants are specialised by rewriting the `const` declarations the
// .wgsl file already has (it stays valid WGSL with its defaults), bind group layouts come from the
// `@binding` declarations, and uniform buffers are packed by the field names of the WGSL struct.
//
// Why not wgsl-preprocessor: it is a tagged template over WGSL held in TypeScript strings; our WGSL
// lives in .wgsl files, and `const` specialisation lets the shader compiler drop dead branches.

export type ConstValue = number | boolean;

const CONST_DECL = (name: string) => new RegExp(`^(\\s*const\\s+${name}\\s*:\\s*(\\w+)\\s*=\\s*)([^;]+);`, 'm');

function literal(type: string, value: ConstValue, name: string): string {
  switch (type) {
    case 'bool':
      return value ? 'true' : 'false';
    case 'u32':
      if (!Number.isInteger(value) || (value as number) < 0) throw new Error(`const ${name}: u32 cannot hold ${value}`);
      return `${value}u`;
    case 'i32':
      if (!Number.isInteger(value)) throw new Error(`const ${name}: i32 cannot hold ${value}`);
      return `${value}i`;
    case 'f32': {
      const v = Number(value);
      if (!Number.isFinite(v)) throw new Error(`const ${name}: f32 cannot hold ${value}`);
      return `${Number.isInteger(v) ? v.toFixed(1) : v.toPrecision(9)}f`;
    }
    default:
      throw new Error(`const ${name}: unsupported type '${type}' for specialisation`);
  }
}

/** Rewrites `const NAME: T = default;` for each given name; throws if a name is not declared. */
export function specialize(source: string, consts: Record<string, ConstValue>): string {
  let out = source;
  for (const [name, value] of Object.entries(consts)) {
    const re = CONST_DECL(name);
    const m = re.exec(out);
    if (!m) throw new Error(`WGSL has no 'const ${name}: <type> = ...;' declaration to specialise`);
    out = out.replace(re, `$1${literal(m[2], value, name)};`);
  }
  return out;
}

export interface BindingDecl {
  name: string;
  binding: number;
  kind: 'uniform' | 'read-only-storage' | 'storage';
}

/** The group(0) bindings a shader declares, in binding order. */
export function parseBindings(source: string): BindingDecl[] {
  const re = /@group\(\s*0\s*\)\s*@binding\(\s*(\d+)\s*\)\s*var<\s*(\w+)\s*(?:,\s*(\w+)\s*)?>\s*(\w+)/g;
  const out: BindingDecl[] = [];
  for (const m of source.matchAll(re)) {
    const [, binding, space, access, name] = m;
    const kind = space === 'uniform' ? 'uniform' : access === 'read_write' ? 'storage' : 'read-only-storage';
    out.push({ name, binding: Number(binding), kind });
  }
  return out.sort((a, b) => a.binding - b.binding);
}

export interface UniformField {
  name: string;
  type: 'u32' | 'i32' | 'f32';
  offset: number;
}
export interface UniformLayout {
  fields: UniformField[];
  /** Struct size rounded up to 16 bytes, as a uniform buffer binding needs. */
  byteSize: number;
}

/** Offsets of a struct of 4-byte scalars (u32/i32/f32), the only kind our uniforms use. */
export function parseUniformStruct(source: string, structName: string): UniformLayout {
  const m = new RegExp(`struct\\s+${structName}\\s*\\{([^}]*)\\}`).exec(source);
  if (!m) throw new Error(`WGSL has no struct ${structName}`);
  const fields: UniformField[] = [];
  const body = m[1].replace(/\/\/.*$/gm, '');
  for (const decl of body.split(',')) {
    const clean = decl.trim();
    if (!clean) continue;
    const f = /^(\w+)\s*:\s*(\w+)$/.exec(clean);
    if (!f || !['u32', 'i32', 'f32'].includes(f[2])) {
      throw new Error(`struct ${structName}: field '${clean}' is not a u32/i32/f32 scalar`);
    }
    fields.push({ name: f[1], type: f[2] as UniformField['type'], offset: fields.length * 4 });
  }
  return { fields, byteSize: Math.max(16, Math.ceil((fields.length * 4) / 16) * 16) };
}

/** Packs values by field name; every field must be given and nothing else. */
export function packUniforms(layout: UniformLayout, values: Record<string, number>): ArrayBuffer {
  const buf = new ArrayBuffer(layout.byteSize);
  const view = new DataView(buf);
  const given = new Set(Object.keys(values));
  for (const f of layout.fields) {
    const v = values[f.name];
    if (v === undefined) throw new Error(`uniform field '${f.name}' was not given`);
    given.delete(f.name);
    if (f.type === 'f32') view.setFloat32(f.offset, v, true);
    else if (f.type === 'u32') {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`uniform field '${f.name}': ${v} is not a u32`);
      view.setUint32(f.offset, v, true);
    } else {
      if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new Error(`uniform field '${f.name}': ${v} is not an i32`);
      view.setInt32(f.offset, v, true);
    }
  }
  if (given.size) throw new Error(`uniform values not in the WGSL struct: ${[...given].join(', ')}`);
  return buf;
}
