// Pure route diff: what we want against what the kernel has under our proto, as `ip -batch`
// lines. Only routes carrying our proto are ever listed here, so nothing else is touched.
import { canonicalCidr, canonicalIp, type DesiredRoute } from "./desired.ts";
import type { CurrentRoute } from "../net/route.ts";

export type { CurrentRoute };

/** One change to make, and the `ip -batch` line that makes it. */
export interface RouteChange {
  readonly op: "add" | "replace" | "delete";
  readonly dst: string;
  readonly via?: string;
  readonly line: string;
}

/**
 * The changes turning `current` into `desired`: add missing routes, replace ours whose gateway
 * moved, delete ours nobody wants. Duplicates of one destination are deleted down to one.
 * New routes are added (not replaced) so a route someone else owns is never overwritten.
 *
 * @example
 * planRoutes([{ family: 4, dst: "10.244.2.0/24", via: "192.0.2.12", node: "n2" }], [], 77);
 * // [{ op: "add", dst: "10.244.2.0/24", via: "192.0.2.12",
 * //    line: "route add 10.244.2.0/24 via 192.0.2.12 proto 77" }]
 */
export function planRoutes(
  desired: readonly DesiredRoute[],
  current: readonly CurrentRoute[],
  proto: number,
): RouteChange[] {
  const have = new Map<string, (string | undefined)[]>();
  for (const r of current) {
    const dst = normalizeDst(r.dst);
    const via = r.via === undefined ? undefined : normalizeIp(r.via);
    have.set(dst, [...(have.get(dst) ?? []), via]);
  }
  const changes: RouteChange[] = [];
  const wanted = new Set<string>();
  for (const r of desired) {
    wanted.add(r.dst);
    const vias = have.get(r.dst);
    if (vias === undefined) {
      changes.push({
        op: "add",
        dst: r.dst,
        via: r.via,
        line: `route add ${r.dst} via ${r.via} proto ${proto}`,
      });
      continue;
    }
    const extra = vias.length > 1 || vias[0] !== r.via;
    if (extra) {
      // Delete every copy but one (by gateway), then replace the survivor with the right one.
      for (const via of vias.slice(1)) changes.push(deleteChange(r.dst, via, proto));
      changes.push({
        op: "replace",
        dst: r.dst,
        via: r.via,
        line: `route replace ${r.dst} via ${r.via} proto ${proto}`,
      });
    }
  }
  for (const [dst, vias] of have) {
    if (wanted.has(dst)) continue;
    for (const via of vias) changes.push(deleteChange(dst, via, proto));
  }
  return changes;
}

function deleteChange(dst: string, via: string | undefined, proto: number): RouteChange {
  const viaPart = via === undefined ? "" : ` via ${via}`;
  return { op: "delete", dst, via, line: `route del ${dst}${viaPart} proto ${proto}` };
}

/** `ip` prints a host route without its prefix ("10.0.0.1"): give it one, canonically. */
function normalizeDst(dst: string): string {
  const withPrefix = dst.includes("/") ? dst : `${dst}/${dst.includes(":") ? 128 : 32}`;
  const c = canonicalCidr(withPrefix);
  return "text" in c ? c.text : dst;
}

function normalizeIp(ip: string): string {
  return canonicalIp(ip)?.text ?? ip;
}
