// Next-fit allocation over a Store: one address per pool, starting after the last one handed
// out (so a just-freed IP is not reused at once), skipping network, gateway and broadcast.
import { CniError, ErrorCode } from "../cni/errors.ts";
import {
  type Cidr,
  cidrContains,
  formatCidr,
  formatIp,
  gatewayOf,
  hostRange,
  type Ip,
  parseIp,
} from "../ip/cidr.ts";
import { type Owner, type Store } from "./store.ts";

/** One pool: a podCIDR and the gateway that is never handed out. */
export interface Pool {
  readonly cidr: Cidr;
  readonly gateway: Ip;
}

/** What one pool gave an attachment. */
export interface Lease {
  readonly ip: Ip;
  readonly pool: Pool;
}

/** The pool for a podCIDR: the gateway is its first address (the bridge holds it). */
export function poolOf(cidr: Cidr): Pool {
  return { cidr, gateway: gatewayOf(cidr) };
}

/**
 * Gives `owner` one address from each pool. An attachment that already holds addresses (an ADD
 * retried after a crash) gets the same ones back. `requested` addresses (CNI_ARGS IP=) must be
 * free, inside a pool and not the gateway.
 */
export async function allocate(
  store: Store,
  pools: readonly Pool[],
  owner: Owner,
  requested: readonly Ip[] = [],
): Promise<Lease[]> {
  const held = await heldBy(store, owner);
  checkRequested(pools, requested);
  const leases: Lease[] = [];
  const plan: { index: number; pool: Pool; ip: Ip; fresh: boolean }[] = [];
  for (const [index, pool] of pools.entries()) {
    const mine = held.find((ip) => cidrContains(pool.cidr, ip));
    const want = requested.find((ip) => cidrContains(pool.cidr, ip));
    if (mine && (!want || want.value === mine.value)) {
      plan.push({ index, pool, ip: mine, fresh: false });
      continue;
    }
    const ip = want ?? await nextFree(store, pool, index, plan.map((p) => p.ip));
    if (want && await store.isTaken(formatIp(want))) {
      // 11, not 7: the request is valid for this network, the address is just held now, and it
      // frees up when its holder is DELeted (a container re-created with the same --ip while the
      // old one's DEL is in flight), like a full pool (also 11). host-local returns an uncoded
      // error (999) here and for a full pool; the spec's 7 would tell the operator to fix a
      // config that is fine.
      throw new CniError(
        ErrorCode.TryAgainLater,
        `Requested IP ${formatIp(want)} is already allocated`,
        "to another container; it is free again once that container is deleted",
      );
    }
    plan.push({ index, pool, ip, fresh: true });
  }
  // The index is written first so it always names a superset of what the attachment owns.
  const all = [...new Set([...held.map(formatIp), ...plan.map((p) => formatIp(p.ip))])];
  await store.setAttachmentIps(owner, all);
  for (const p of plan) {
    if (p.fresh) {
      if (!await store.reserve(formatIp(p.ip), owner)) {
        throw new CniError(
          ErrorCode.TryAgainLater,
          `IP ${formatIp(p.ip)} was taken while allocating`,
        );
      }
      await store.setLastReserved(p.index, formatIp(p.ip));
    }
    leases.push({ ip: p.ip, pool: p.pool });
  }
  return leases;
}

/** Releases everything `owner` holds; a second call finds nothing and succeeds. */
export async function release(store: Store, owner: Owner): Promise<string[]> {
  const ips = await store.attachmentIps(owner);
  const freed: string[] = [];
  for (const ip of ips) {
    if (await store.owns(ip, owner)) {
      await store.release(ip, owner);
      freed.push(ip);
    }
  }
  await store.setAttachmentIps(owner, []);
  return freed;
}

/** Addresses the attachment really holds (the index may name one a crash never reserved). */
export async function heldBy(store: Store, owner: Owner): Promise<Ip[]> {
  const out: Ip[] = [];
  for (const text of await store.attachmentIps(owner)) {
    if (await store.owns(text, owner)) out.push(parseIp(text));
  }
  return out;
}

async function nextFree(
  store: Store,
  pool: Pool,
  index: number,
  taken: readonly Ip[],
): Promise<Ip> {
  const { first, last } = hostRange(pool.cidr);
  const size = last - first + 1n;
  const lastText = await store.lastReserved(index);
  let start = first;
  if (lastText) {
    try {
      const prev = parseIp(lastText);
      if (cidrContains(pool.cidr, prev) && prev.value >= first && prev.value <= last) {
        start = prev.value === last ? first : prev.value + 1n;
      }
    } catch { /* a corrupt marker only costs us the round-robin position */ }
  }
  for (let i = 0n; i < size; i++) {
    const value = first + ((start - first + i) % size);
    if (value === pool.gateway.value || taken.some((t) => t.value === value)) continue;
    const ip: Ip = { family: pool.cidr.family, value };
    if (!await store.isTaken(formatIp(ip))) return ip;
  }
  throw new CniError(
    ErrorCode.TryAgainLater,
    `No IP addresses available in ${formatCidr(pool.cidr)}`,
    `all ${
      size - 1n
    } addresses are allocated; release some (DEL, or GC with the valid attachments)`,
  );
}

function checkRequested(pools: readonly Pool[], requested: readonly Ip[]): void {
  const refuse = (msg: string) => new CniError(ErrorCode.InvalidConfig, msg);
  for (const ip of requested) {
    const pool = pools.find((p) => cidrContains(p.cidr, ip));
    if (!pool) throw refuse(`Requested IP ${formatIp(ip)} is not in any podCIDR of this node`);
    const { first, last } = hostRange(pool.cidr);
    const what = ip.value < first ? "network" : ip.value > last ? "broadcast" : "";
    if (what) {
      throw refuse(
        `Requested IP ${formatIp(ip)} is the ${what} address of ${formatCidr(pool.cidr)}`,
      );
    }
    if (ip.value === pool.gateway.value) {
      throw refuse(`Requested IP ${formatIp(ip)} is the gateway`);
    }
    // One address per pool per attachment: a second one would be dropped without a word.
    if (requested.some((o) => o.value !== ip.value && cidrContains(pool.cidr, o))) {
      throw refuse(
        `Requested IPs ${
          requested.filter((o) => cidrContains(pool.cidr, o)).map(formatIp).join(", ")
        }: more than one address in ${formatCidr(pool.cidr)}`,
      );
    }
  }
}
