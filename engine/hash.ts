// FNV-1a over a string's UTF-16 code units: enough to tell shader sources apart (pipeline cache
// keys, the tuned-tile cache's kernel revision). Not a cryptographic hash.

export function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16);
}
