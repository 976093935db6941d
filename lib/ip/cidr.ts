// IPv4 and IPv6 address and CIDR math on bigints: one code path for both families.

/** Address family: 4 or 6. */
export type Family = 4 | 6;

/** An IP address as a number. */
export interface Ip {
  readonly family: Family;
  readonly value: bigint;
}

/** A network: the address with host bits cleared, and its prefix length. */
export interface Cidr {
  readonly family: Family;
  readonly network: bigint;
  readonly prefix: number;
}

/** Each family's multicast block, as CIDR text (the masquerade rules leave it out). */
export const MULTICAST: Readonly<Record<Family, string>> = { 4: "224.0.0.0/4", 6: "ff00::/8" };

/** Bits in an address of the family. */
export function familyBits(family: Family): number {
  return family === 4 ? 32 : 128;
}

/**
 * Parses an IPv4 or IPv6 address (no prefix, no zone).
 *
 * @example
 * parseIp("10.244.1.5"); // { family: 4, value: 183763205n }
 */
export function parseIp(text: string): Ip {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseIpv6(text);
  if (v6 !== undefined) return { family: 6, value: v6 };
  throw new Error(`"${text}" is not an IP address`);
}

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return undefined;
    value = (value << 8n) | BigInt(part);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.split("::").length > 2) return undefined;
  let groups: number[] = [];
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const parseGroups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const pieces = s.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      if (i === pieces.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (v4 === undefined) return undefined;
        out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) out.push(parseInt(p, 16));
      else return undefined;
    }
    return out;
  };
  const h = parseGroups(head);
  if (h === undefined) return undefined;
  if (tail === undefined) {
    if (h.length !== 8) return undefined;
    groups = h;
  } else {
    const t = parseGroups(tail);
    if (t === undefined || h.length + t.length > 7) return undefined;
    groups = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  }
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/** Formats an address; IPv6 in the RFC 5952 canonical form (as Go's net.IP.String()). */
export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((ip.value >> s) & 0xffn)).join(".");
  }
  const groups = [...Array(8).keys()].map((i) =>
    Number((ip.value >> BigInt(112 - 16 * i)) & 0xffffn)
  );
  // Longest run of two or more zero groups becomes "::" (first one wins a tie).
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/**
 * Parses "address/prefix". With `strict`, host bits must be zero (a podCIDR); otherwise they
 * are cleared and the address is returned beside the network (an interface address).
 */
export function parseCidr(text: string, opts: { strict?: boolean } = {}): Cidr {
  const m = /^([^/]+)\/([0-9]{1,3})$/.exec(text);
  if (!m) throw new Error(`"${text}" is not a CIDR (want address/prefix)`);
  const ip = parseIp(m[1]);
  const prefix = Number(m[2]);
  if (prefix > familyBits(ip.family)) {
    throw new Error(`"${text}" has a prefix longer than the address`);
  }
  const cidr = { family: ip.family, network: ip.value & prefixMask(ip.family, prefix), prefix };
  if (opts.strict && cidr.network !== ip.value) {
    throw new Error(`"${text}" has host bits set (the network is ${formatCidr(cidr)})`);
  }
  return cidr;
}

/** Parses "address/prefix" keeping the host part: the address and the network it sits in. */
export function parseIpWithPrefix(text: string): { ip: Ip; cidr: Cidr } {
  const cidr = parseCidr(text);
  return { ip: parseIp(text.slice(0, text.indexOf("/"))), cidr };
}

/** "network/prefix". */
export function formatCidr(cidr: Cidr): string {
  return `${formatIp({ family: cidr.family, value: cidr.network })}/${cidr.prefix}`;
}

function prefixMask(family: Family, prefix: number): bigint {
  const bits = BigInt(familyBits(family));
  const all = (1n << bits) - 1n;
  return all ^ ((1n << (bits - BigInt(prefix))) - 1n);
}

/** Number of addresses in the network. */
export function cidrSize(cidr: Cidr): bigint {
  return 1n << BigInt(familyBits(cidr.family) - cidr.prefix);
}

/** The last address of the network (the IPv4 broadcast). */
export function lastAddress(cidr: Cidr): bigint {
  return cidr.network + cidrSize(cidr) - 1n;
}

/** The gateway: the first address after the network address. */
export function gatewayOf(cidr: Cidr): Ip {
  return { family: cidr.family, value: cidr.network + 1n };
}

/**
 * The addresses pods may get, as host-local hands them out: from network+1 to broadcast-1 for
 * IPv4, to the last address for IPv6; the gateway (network+1) is excluded by the caller.
 */
export function hostRange(cidr: Cidr): { first: bigint; last: bigint } {
  const last = cidr.family === 4 ? lastAddress(cidr) - 1n : lastAddress(cidr);
  return { first: cidr.network + 1n, last };
}

/** Whether `ip` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, ip: Ip): boolean {
  return ip.family === cidr.family &&
    (ip.value & prefixMask(cidr.family, cidr.prefix)) === cidr.network;
}

/** Whether two networks share any address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const p = Math.min(a.prefix, b.prefix);
  const mask = prefixMask(a.family, p);
  return (a.network & mask) === (b.network & mask);
}

/** Host-local's minimum: a network must leave room for a gateway and one pod. */
export function isTooSmall(cidr: Cidr): boolean {
  return cidr.prefix > familyBits(cidr.family) - 2;
}

/**
 * The smallest set of networks covering exactly the same addresses (v4 first).
 *
 * @example
 * aggregateCidrs(["10.0.0.0/24", "10.0.1.0/24"].map((c) => parseCidr(c))); // [10.0.0.0/23]
 */
export function aggregateCidrs(cidrs: readonly Cidr[]): Cidr[] {
  const sorted = [...cidrs].sort((a, b) =>
    a.family - b.family || (a.network < b.network ? -1 : a.network > b.network ? 1 : 0) ||
    a.prefix - b.prefix
  );
  const out: Cidr[] = [];
  for (const c of sorted) {
    const last = out[out.length - 1];
    if (last && last.family === c.family && last.prefix <= c.prefix && cidrsOverlap(last, c)) {
      continue;
    }
    out.push(c);
    // Merge siblings upwards: 10.0.0.0/24 + 10.0.1.0/24 -> 10.0.0.0/23, and again if possible.
    while (out.length >= 2) {
      const b = out[out.length - 1], a = out[out.length - 2];
      if (a.family !== b.family || a.prefix !== b.prefix || a.prefix === 0) break;
      const size = 1n << BigInt(familyBits(a.family) - a.prefix);
      if (a.network + size !== b.network || a.network % (size * 2n) !== 0n) break;
      out.splice(out.length - 2, 2, { family: a.family, network: a.network, prefix: a.prefix - 1 });
    }
  }
  return out;
}
