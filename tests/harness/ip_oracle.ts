// A second, deliberately different implementation of the address facts the property tests
// check lib/ip/cidr.ts and the allocator against: addresses as strings of bits (a network is a
// prefix of them), text from bytes and groups, IPv6 made canonical by the WHATWG URL parser.
// It shares no code with lib/ip/cidr.ts, so a bug there cannot hide in its own oracle.

/** An address: the family and its value (the shape lib/ip/cidr.ts uses, so values compare). */
export interface OracleIp {
  readonly family: 4 | 6;
  readonly value: bigint;
}

/** A network: the family, its first address and the prefix length. */
export interface OracleCidr {
  readonly family: 4 | 6;
  readonly network: bigint;
  readonly prefix: number;
}

const width = (family: 4 | 6) => family === 4 ? 32 : 128;

/** The address as a string of 32 or 128 "0"/"1" characters, most significant first. */
export function bitsOf(family: 4 | 6, value: bigint): string {
  return value.toString(2).padStart(width(family), "0");
}

const fromBits = (bits: string) => BigInt(`0b${bits}`);

/** Whether `ip` is in `cidr`: same family, and its first `prefix` bits are the network's. */
export function within(cidr: OracleCidr, ip: OracleIp): boolean {
  if (ip.family !== cidr.family) return false;
  const n = cidr.prefix;
  return bitsOf(ip.family, ip.value).slice(0, n) === bitsOf(cidr.family, cidr.network).slice(0, n);
}

/** The last address of the network: its prefix followed by ones. */
export function lastOf(cidr: OracleCidr): bigint {
  const head = bitsOf(cidr.family, cidr.network).slice(0, cidr.prefix);
  return fromBits(head.padEnd(width(cidr.family), "1"));
}

/** How many addresses the network has: a one followed by a zero per host bit. */
export function sizeOf(cidr: OracleCidr): bigint {
  return fromBits("1".padEnd(width(cidr.family) - cidr.prefix + 1, "0"));
}

/** The host part of `ip` in `cidr`, as bits. */
function hostBits(cidr: OracleCidr, ip: OracleIp): string {
  return bitsOf(ip.family, ip.value).slice(cidr.prefix);
}

/** What an address is to a pod network, as host-local and DESIGN.md define it. */
export type Role = "outside" | "network" | "gateway" | "broadcast" | "pod";

/**
 * The role of `ip` in `cidr`: host bits all zero is the network, ...01 the gateway (the bridge),
 * all ones the IPv4 broadcast; any other address inside may go to a pod.
 */
export function roleOf(cidr: OracleCidr, ip: OracleIp): Role {
  if (!within(cidr, ip)) return "outside";
  const host = hostBits(cidr, ip);
  if (!host.includes("1")) return "network";
  if (host === "1".padStart(host.length, "0")) return "gateway";
  if (cidr.family === 4 && !host.includes("0")) return "broadcast";
  return "pod";
}

/** How many addresses of `cidr` may go to pods: all but network, gateway (and broadcast). */
export function podCapacity(cidr: OracleCidr): bigint {
  return sizeOf(cidr) - (cidr.family === 4 ? 3n : 2n);
}

/**
 * The pod addresses of `cidr` in hand-out order, starting after `after` (or at the start) and
 * wrapping around once: host-local's next-fit walk. Only for small networks.
 */
export function podAddressesAfter(cidr: OracleCidr, after?: bigint): bigint[] {
  const all: bigint[] = [];
  for (let v = cidr.network; v <= lastOf(cidr); v++) {
    if (roleOf(cidr, { family: cidr.family, value: v }) === "pod") all.push(v);
  }
  const at = after === undefined ? 0 : all.findIndex((v) => v > after);
  return at <= 0 ? all : [...all.slice(at), ...all.slice(0, at)];
}

/** The address as text: dotted bytes, or IPv6 in the form the WHATWG URL parser gives it. */
export function textOf(ip: OracleIp): string {
  const bits = bitsOf(ip.family, ip.value);
  if (ip.family === 4) {
    return [0, 8, 16, 24].map((i) => parseInt(bits.slice(i, i + 8), 2)).join(".");
  }
  const groups = [...Array(8).keys()].map((i) => parseInt(bits.slice(16 * i, 16 * i + 16), 2));
  const host = new URL(`http://[${groups.map((g) => g.toString(16)).join(":")}]/`).hostname;
  return host.slice(1, -1);
}

/** "text/prefix" of a network. */
export function cidrText(cidr: OracleCidr): string {
  return `${textOf({ family: cidr.family, value: cidr.network })}/${cidr.prefix}`;
}
