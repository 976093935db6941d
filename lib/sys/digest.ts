// A fast, synchronous digest for deriving kernel object names (veths, MACs, chains) from a
// container ID. Not for security: it only has to spread names. crypto.subtle is async and runs
// on a thread pool, which costs the plugin milliseconds per call on every ADD.

/**
 * 128 bits as 32 hex characters: four FNV-1a 32-bit hashes of the same bytes, each from a
 * different offset basis, each finished with an avalanche step.
 *
 * @example
 * nameDigest("abc/eth0").slice(0, 11); // "3f0c..." (stable across runs and machines)
 */
export function nameDigest(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let out = "";
  for (const seed of [0x811c9dc5, 0x050c5d1f, 0x2d3f4a5b, 0x6e7f8091]) {
    let h = seed;
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
    // A final avalanche so nearby inputs differ in the leading characters too.
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
    h = (h ^ (h >>> 13)) >>> 0;
    out += h.toString(16).padStart(8, "0");
  }
  return out;
}
