// Pure diffs between what this node wants towards its peers and what the kernel holds: routes
// under our proto, and the neighbour and FDB entries on our VXLAN device. Only what is ours is
// ever listed here, so nothing else is touched.
import type { FdbEntry, Neighbour } from "../net/neigh.ts";
import type { OwnedRoute } from "../net/route.ts";
import type { PeerRoute, VtepFdb, VtepNeighbour } from "./backend.ts";

/** One route change: add or replace one we want, delete one of ours nobody wants. */
export type RouteChange =
  | { readonly op: "add" | "replace"; readonly route: PeerRoute }
  | { readonly op: "delete"; readonly route: OwnedRoute };

/**
 * The changes turning `current` into `desired`: add missing routes, replace ours whose gateway,
 * device or onlink flag is wrong (a peer that moved, or switched backend), delete ours nobody
 * wants. Duplicates of one destination are deleted down to one. New routes are added (not
 * replaced) so a route someone else owns is never overwritten.
 *
 * @example
 * planRoutes([{ family: 4, dst: "10.244.2.0/24", via: "192.0.2.12", onlink: false,
 *   node: "n2", backend: "host-gw" }], []);
 * // [{ op: "add", route: { family: 4, dst: "10.244.2.0/24", via: "192.0.2.12", ... } }]
 */
export function planRoutes(
  desired: readonly PeerRoute[],
  current: readonly OwnedRoute[],
): RouteChange[] {
  const have = new Map<string, OwnedRoute[]>();
  for (const r of current) have.set(r.dst, [...(have.get(r.dst) ?? []), r]);
  const changes: RouteChange[] = [];
  const wanted = new Set<string>();
  for (const d of desired) {
    wanted.add(d.dst);
    const mine = have.get(d.dst);
    if (mine === undefined) {
      changes.push({ op: "add", route: d });
      continue;
    }
    const keep = mine.find((c) => routeMatches(c, d)) ?? mine[0];
    for (const c of mine) if (c !== keep) changes.push({ op: "delete", route: c });
    if (routeMatches(keep, d)) continue;
    if (d.family === 6 && d.onlink && keep.oif !== d.oif) {
      // IPv6 checks an onlink gateway against the table, where the route being replaced still
      // covers it through the other device: "Nexthop has invalid gateway or device mismatch"
      // (ip6_route_check_nh_onlink). So host-gw -> VXLAN is delete, then add.
      changes.push({ op: "delete", route: keep }, { op: "add", route: d });
    } else changes.push({ op: "replace", route: d });
  }
  for (const [dst, mine] of have) {
    if (!wanted.has(dst)) { for (const c of mine) changes.push({ op: "delete", route: c }); }
  }
  return changes;
}

/** Whether a kernel route is the one wanted (the device only when the plan names one). */
export function routeMatches(c: OwnedRoute, d: PeerRoute): boolean {
  return c.via === d.via && c.onlink === d.onlink && (d.oif === undefined || c.oif === d.oif) &&
    c.type === 1 && !c.multipath;
}

/** A neighbour entry to write, or one of ours to delete. */
export type NeighbourChange =
  | { readonly op: "set"; readonly entry: VtepNeighbour }
  | { readonly op: "delete"; readonly entry: Neighbour };

/**
 * Neighbour changes on the VXLAN device: write each wanted VTEP whose entry is missing, not
 * permanent or has another MAC; delete permanent entries nobody wants. Entries the kernel made
 * itself (not permanent) are left to it.
 *
 * @example
 * planNeighbours([{ family: 4, ip: "10.244.3.0", mac: "0e:4d:c6:33:64:0d", node: "n3" }], []);
 * // [{ op: "set", entry: { family: 4, ip: "10.244.3.0", ... } }]
 */
export function planNeighbours(
  desired: readonly VtepNeighbour[],
  current: readonly Neighbour[],
): NeighbourChange[] {
  const have = new Map(current.map((n) => [n.ip, n]));
  const changes: NeighbourChange[] = [];
  const wanted = new Set<string>();
  for (const d of desired) {
    wanted.add(d.ip);
    const c = have.get(d.ip);
    if (!c || !c.permanent || c.mac !== d.mac) changes.push({ op: "set", entry: d });
  }
  for (const c of current) {
    if (c.permanent && !wanted.has(c.ip)) changes.push({ op: "delete", entry: c });
  }
  return changes;
}

/** An FDB entry to write, or one of ours to delete. */
export type FdbChange =
  | { readonly op: "set"; readonly entry: VtepFdb }
  | { readonly op: "delete"; readonly entry: FdbEntry };

/**
 * FDB changes on the VXLAN device: write each wanted MAC whose entry is missing or points
 * elsewhere (a replace rewrites it in place); delete permanent entries nobody wants.
 *
 * @example
 * planFdb([{ mac: "0e:4d:c6:33:64:0d", dst: "198.51.100.13", node: "n3" }], []);
 * // [{ op: "set", entry: { mac: "0e:4d:c6:33:64:0d", dst: "198.51.100.13", node: "n3" } }]
 */
export function planFdb(desired: readonly VtepFdb[], current: readonly FdbEntry[]): FdbChange[] {
  const key = (mac: string, dst: string | undefined) => `${mac} ${dst ?? ""}`;
  const have = new Set(current.filter((c) => c.permanent).map((c) => key(c.mac, c.dst)));
  const wanted = new Set(desired.map((d) => key(d.mac, d.dst)));
  const changes: FdbChange[] = [];
  for (const d of desired) {
    if (!have.has(key(d.mac, d.dst))) changes.push({ op: "set", entry: d });
  }
  for (const c of current) {
    if (c.permanent && !wanted.has(key(c.mac, c.dst))) changes.push({ op: "delete", entry: c });
  }
  return changes;
}
