// Routes over rtnetlink, one codec for all of them: the pod's own routes the plugin adds, the
// routes the agent owns (marked with ROUTE_PROTO, so listing, replacing and deleting only ever
// see our own routes, never the host's or another agent's), the dumps CHECK and the MTU lookup
// read, and the lookup (`ip route get`) the per-peer backend choice asks the kernel.
import type { Family } from "../ip/cidr.ts";
import {
  attr,
  concat,
  ESRCH,
  NetlinkError,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  Rtnl,
  u32Attr,
} from "./netlink.ts";
import { AF_INET, AF_INET6, type Dev, ipBytes, ipText } from "./rtnl.ts";

/**
 * The routing protocol number our routes carry (`ip route ... proto 77`). Unassigned in
 * /etc/iproute2/rt_protos and by the routing daemons we know of (bird 12, babel 42, bgp 186...).
 */
export const ROUTE_PROTO = 77;

/** The main routing table: where `ip route` adds and looks, unless told otherwise. */
export const RT_TABLE_MAIN = 254;
/** rtm_type of a plain route, and of one to an address of this host. */
export const RTN_UNICAST = 1;
export const RTN_LOCAL = 2;

const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const RTM_GETROUTE = 26;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_MULTIPATH = 9;
const RTA_TABLE = 15;
/** What `ip route add` marks a route with unless told otherwise. */
const RTPROT_BOOT = 3;
/** rtm_flags: the gateway is on the link whatever its address says (`onlink`). */
const RTNH_F_ONLINK = 4;
/** rtm_flags of a lookup: answer with the table the route came from, as `ip route get` does. */
const RTM_F_LOOKUP_TABLE = 0x1000;
const RT_SCOPE_UNIVERSE = 0;
/** A delete's scope: any. */
const RT_SCOPE_NOWHERE = 255;

/** A route as the kernel lists it. */
export interface KernelRoute {
  readonly family: Family;
  /** Canonical CIDR: "10.244.2.0/24", "fd00:10:244:2::/64", "0.0.0.0/0". */
  readonly dst: string;
  readonly table: number;
  readonly protocol: number;
  /** rtm_type: 1 unicast, 2 local, 6 blackhole, 7 unreachable... */
  readonly type: number;
  readonly via?: string;
  readonly oif?: number;
  readonly onlink: boolean;
  /** Several nexthops (RTA_MULTIPATH): no single gateway or device to report. */
  readonly multipath: boolean;
}

/** A route of ours found in the kernel (main table, proto {@linkcode ROUTE_PROTO}). */
export type OwnedRoute = KernelRoute;

/** A route to add or replace: `DST via VIA [dev DEV] [onlink] proto 77`. */
export interface RouteSpec {
  readonly dst: string;
  readonly via: string;
  readonly dev?: Dev;
  readonly onlink?: boolean;
}

/**
 * `ip -4|-6 route show table all`: every route of the family.
 *
 * @example
 * listRoutes(nl, 4).filter((r) => r.dst === "0.0.0.0/0"); // the default route(s)
 */
export function listRoutes(
  nl: Rtnl,
  family: Family,
  keep: (body: Uint8Array) => boolean = () => true,
): KernelRoute[] {
  const msg = new Uint8Array(12);
  msg[0] = family === 4 ? AF_INET : AF_INET6;
  const out: KernelRoute[] = [];
  nl.dumpEach(RTM_GETROUTE, msg, `ip -${family} route show table all`, (type, body) => {
    if (type === RTM_NEWROUTE && keep(body)) out.push(parseRoute(body));
  });
  return out;
}

/**
 * Every route of ours, both families, in the main table. Opens a socket in our netns when `nl`
 * is not given.
 *
 * @example
 * listOwnedRoutes(nl); // [{ family: 4, dst: "10.244.2.0/24", via: "192.0.2.12", oif: 2, ... }]
 */
export function listOwnedRoutes(nl?: Rtnl): OwnedRoute[] {
  // Only ours are parsed: rtm_protocol is byte 5 of the rtmsg.
  const ours = (body: Uint8Array) => body[5] === ROUTE_PROTO;
  return withRtnl(
    nl,
    (s) =>
      [...listRoutes(s, 4, ours), ...listRoutes(s, 6, ours)].filter((r) =>
        r.table === RT_TABLE_MAIN
      ),
  );
}

/** `ip route add DST via VIA dev DEV` (main table, proto boot, as `ip` defaults): a pod's routes. */
export function routeAdd(nl: Rtnl, route: RouteSpec & { dev: Dev }): void {
  nl.request(
    RTM_NEWROUTE,
    NLM_F_CREATE | NLM_F_EXCL,
    routeMessage(route, { protocol: RTPROT_BOOT, scope: RT_SCOPE_UNIVERSE, type: RTN_UNICAST }),
    `ip route add ${describe(route)}`,
  );
}

/**
 * `ip route add|replace DST via VIA [dev DEV] [onlink] proto 77`. Add is exclusive: a route to
 * the same destination that someone else made is never overwritten (the kernel says EEXIST).
 */
export function setRoute(nl: Rtnl, route: RouteSpec, opts: { replace: boolean }): void {
  const verb = opts.replace ? "replace" : "add";
  nl.request(
    RTM_NEWROUTE,
    NLM_F_CREATE | (opts.replace ? NLM_F_REPLACE : NLM_F_EXCL),
    routeMessage(route, { protocol: ROUTE_PROTO, scope: RT_SCOPE_UNIVERSE, type: RTN_UNICAST }),
    `ip route ${verb} ${describe(route)} proto ${ROUTE_PROTO}`,
  );
}

/** `ip route del DST [via VIA] [dev DEV] proto 77`; false when it was already gone. */
export function deleteRoute(nl: Rtnl, route: Omit<RouteSpec, "via"> & { via?: string }): boolean {
  try {
    nl.request(
      RTM_DELROUTE,
      0,
      routeMessage(route, { protocol: ROUTE_PROTO, scope: RT_SCOPE_NOWHERE, type: 0 }),
      `ip route del ${describe(route)} proto ${ROUTE_PROTO}`,
    );
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ESRCH) return false;
    throw err;
  }
}

/** Deletes every route of ours, both families. Returns how many it deleted. */
export function flushOwnedRoutes(nl?: Rtnl): number {
  return withRtnl(nl, (s) => {
    let n = 0;
    for (const r of listOwnedRoutes(s)) {
      if (deleteRoute(s, { dst: r.dst, via: r.via, dev: devOf(r) })) n++;
    }
    return n;
  });
}

/** What the kernel answered to `ip route get IP`: what tells an on-link peer from others. */
export interface RouteAnswer {
  /** How many routes it answered with (one, for a unicast lookup). */
  readonly routes: number;
  /** rtm_type: 1 unicast, 2 local, 6 blackhole, 7 unreachable... */
  readonly type: number;
  readonly via?: string;
  readonly oif?: number;
  readonly multipath: boolean;
}

/**
 * `ip route get IP` for each of `ips`: the route the kernel would use for a packet to it, or the
 * kernel's refusal (e.g. "Network is unreachable") as a {@linkcode NetlinkError}. Pipelined:
 * thousands of peers cost one system call each.
 *
 * @example
 * routeGetEach(nl, ["192.0.2.12"])[0]; // { routes: 1, type: 1, oif: 2, multipath: false }
 */
export function routeGetEach(nl: Rtnl, ips: readonly string[]): (RouteAnswer | NetlinkError)[] {
  return nl.requestEach(
    RTM_GETROUTE,
    ips.map(routeGetMessage),
    (i) => `ip route get ${ips[i]}`,
    (type, body): RouteAnswer => {
      if (type !== RTM_NEWROUTE) return { routes: 0, type: 0, multipath: false };
      const r = parseRoute(body);
      const answer: { -readonly [K in keyof RouteAnswer]: RouteAnswer[K] } = {
        routes: 1,
        type: r.type,
        multipath: r.multipath,
      };
      if (r.via !== undefined) answer.via = r.via;
      if (r.oif !== undefined) answer.oif = r.oif;
      return answer;
    },
  );
}

/** The RTM_GETROUTE body of `ip route get IP`: a host-prefix rtmsg asking for the table too. */
export function routeGetMessage(ip: string): Uint8Array {
  let body = lookupBodies.get(ip);
  if (body === undefined) {
    const dst = ipBytes(ip);
    const msg = new Uint8Array(12);
    msg[0] = dst.length === 4 ? AF_INET : AF_INET6;
    msg[1] = dst.length * 8;
    new DataView(msg.buffer).setUint32(8, RTM_F_LOOKUP_TABLE, true);
    body = concat([msg, attr(RTA_DST, dst)]);
    // Peers' addresses repeat on every resync: encode each once (bounded, cleared when full).
    if (lookupBodies.size >= LOOKUP_CACHE_LIMIT) lookupBodies.clear();
    lookupBodies.set(ip, body);
  }
  return body;
}

const LOOKUP_CACHE_LIMIT = 20_000;
const lookupBodies = new Map<string, Uint8Array>();

/** The message for a route change: rtmsg, then DST, GATEWAY, OIF as `ip` orders them. */
export function routeMessage(
  route: Omit<RouteSpec, "via"> & { via?: string },
  how: { protocol: number; scope: number; type: number },
): Uint8Array {
  const [net, prefixText] = route.dst.split("/");
  const dst = ipBytes(net);
  const prefix = Number(prefixText ?? dst.length * 8);
  const msg = new Uint8Array(12);
  msg.set([
    dst.length === 4 ? AF_INET : AF_INET6,
    prefix,
    0,
    0,
    RT_TABLE_MAIN,
    how.protocol,
    how.scope,
    how.type,
  ]);
  new DataView(msg.buffer).setUint32(8, route.onlink ? RTNH_F_ONLINK : 0, true);
  return concat([
    msg,
    ...(prefix > 0 ? [attr(RTA_DST, dst)] : []),
    ...(route.via === undefined ? [] : [attr(RTA_GATEWAY, ipBytes(route.via))]),
    ...(route.dev === undefined ? [] : [u32Attr(RTA_OIF, route.dev.index)]),
  ]);
}

/** Parses an RTM_NEWROUTE body (rtmsg + attributes); `body` may be a view of a reused buffer. */
export function parseRoute(body: Uint8Array): KernelRoute {
  const family: Family = body[0] === AF_INET ? 4 : 6;
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let dst: Uint8Array | undefined, via: string | undefined, oif: number | undefined;
  let table: number = body[4], multipath = false;
  // One pass over the attributes, no map: a resync parses thousands of these.
  for (let off = 12; off + 4 <= body.length;) {
    const len = v.getUint16(off, true);
    if (len < 4 || off + len > body.length) break;
    const type = v.getUint16(off + 2, true) & 0x3fff;
    if (type === RTA_DST) dst = body.subarray(off + 4, off + len);
    else if (type === RTA_GATEWAY) via = ipText(body.subarray(off + 4, off + len));
    else if (type === RTA_OIF) oif = v.getUint32(off + 4, true);
    else if (type === RTA_TABLE) table = v.getUint32(off + 4, true);
    else if (type === RTA_MULTIPATH) multipath = true;
    off += (len + 3) & ~3;
  }
  const route: { -readonly [K in keyof KernelRoute]: KernelRoute[K] } = {
    family,
    dst: `${ipText(dst ?? new Uint8Array(family === 4 ? 4 : 16))}/${body[1]}`,
    table,
    protocol: body[5],
    type: body[7],
    onlink: (v.getUint32(8, true) & RTNH_F_ONLINK) !== 0,
    multipath,
  };
  if (via !== undefined) route.via = via;
  if (oif) route.oif = oif;
  return route;
}

function describe(route: Omit<RouteSpec, "via"> & { via?: string }): string {
  return [
    route.dst,
    ...(route.via === undefined ? [] : ["via", route.via]),
    ...(route.dev === undefined ? [] : ["dev", route.dev.name]),
    ...(route.onlink ? ["onlink"] : []),
  ].join(" ");
}

function devOf(r: KernelRoute): Dev | undefined {
  return r.oif === undefined ? undefined : { index: r.oif, name: `#${r.oif}` };
}

/** Runs `fn` on `nl`, or on a socket of our own netns opened and closed around it. */
function withRtnl<T>(nl: Rtnl | undefined, fn: (nl: Rtnl) => T): T {
  if (nl) return fn(nl);
  using own = Rtnl.open();
  return fn(own);
}
