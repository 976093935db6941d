// Addresses and CIDRs from text in canonical form, memoised, and what is read from lists of
// them: the agent parses the same node list on every reconcile. Pure.
import { type Cidr, type Family, formatCidr, formatIp, parseCidr, parseIp } from "./cidr.ts";

/** A parsed CIDR in canonical text, or why it is not one. */
export type CanonicalCidr = { readonly cidr: Cidr; readonly text: string } | {
  readonly error: string;
};

// Node lists repeat the same strings on every reconcile; parsing them (bigint math) is most of a
// reconcile's CPU at 1000 nodes, so parse each distinct string once. Bounded: cleared when full.
const CACHE_LIMIT = 50_000;
const cidrCache = new Map<string, CanonicalCidr>();
const ipCache = new Map<string, { family: Family; text: string } | undefined>();

/**
 * `text` as a strict CIDR in canonical form (memoised).
 *
 * @example
 * canonicalCidr("FD00:10:244:0002::/64"); // { cidr, text: "fd00:10:244:2::/64" }
 */
export function canonicalCidr(text: string): CanonicalCidr {
  let hit = cidrCache.get(text);
  if (hit === undefined) {
    try {
      const cidr = parseCidr(text, { strict: true });
      hit = { cidr, text: formatCidr(cidr) };
    } catch (err) {
      hit = { error: (err as Error).message };
    }
    if (cidrCache.size >= CACHE_LIMIT) cidrCache.clear();
    cidrCache.set(text, hit);
  }
  return hit;
}

/** `text` as an IP in canonical form, or undefined (memoised). */
export function canonicalIp(text: string): { family: Family; text: string } | undefined {
  if (ipCache.has(text)) return ipCache.get(text);
  let hit: { family: Family; text: string } | undefined;
  try {
    const ip = parseIp(text);
    hit = { family: ip.family, text: formatIp(ip) };
  } catch {
    hit = undefined;
  }
  if (ipCache.size >= CACHE_LIMIT) ipCache.clear();
  ipCache.set(text, hit);
  return hit;
}

/**
 * The families of the valid CIDRs among `cidrs`, v4 first.
 *
 * @example
 * familiesOf(["fd00::/64", "10.0.0.0/8", "bad"]); // [4, 6]
 */
export function familiesOf(cidrs: readonly string[]): Family[] {
  const set = new Set(validCidrs(cidrs).map((c) => c.family));
  return ([4, 6] as const).filter((f) => set.has(f));
}

/**
 * The valid CIDRs among `texts`, parsed (memoised). A bad one is skipped: the agent reports a
 * node's bad podCIDR once, where it plans the routes (lib/node/backend.ts peerCidrs).
 */
export function validCidrs(texts: readonly string[]): Cidr[] {
  const out: Cidr[] = [];
  for (const t of texts) {
    const c = canonicalCidr(t);
    if ("cidr" in c) out.push(c.cidr);
  }
  return out;
}
