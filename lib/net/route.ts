// Kernel routes the agent owns, over rtnetlink: marked with ROUTE_PROTO so listing, replacing and
// deleting only ever see our own routes, never the host's or another agent's. Also the lookup
// (`ip route get`) the per-peer backend choice asks the kernel.
import type { Family } from "../ip/cidr.ts";
import {
  attr,
  concat,
  NetlinkError,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  parseAttrs,
  Rtnl,
  u32Attr,
} from "./netlink.ts";
import {
  AF_INET,
  AF_INET6,
  type Dev,
  ipBytes,
  ipText,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_TABLE,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTN_UNICAST,
} from "./rtnl.ts";

/**
 * The routing protocol number our routes carry (`ip route ... proto 77`). Unassigned in
 * /etc/iproute2/rt_protos and by the routing daemons we know of (bird 12, babel 42, bgp 186...).
 */
export const ROUTE_PROTO = 77;

const RTM_DELROUTE = 25;
const RTA_MULTIPATH = 9;
/** rtm_flags: the gateway is on the link whatever its address says (`onlink`). */
const RTNH_F_ONLINK = 4;
/** rtm_flags of a lookup: answer with the table the route came from, as `ip route get` does. */
const RTM_F_LOOKUP_TABLE = 0x1000;
const RT_SCOPE_UNIVERSE = 0;
/** A delete's scope: any. */
const RT_SCOPE_NOWHERE = 255;
/** errno of a delete whose route is already gone. */
const ESRCH = 3;
/** errno for a lookup the kernel acked without an answer (never seen; kept from being silent). */
const ENODATA = 61;

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
export function listRoutes(nl: Rtnl, family: Family): KernelRoute[] {
  const msg = new Uint8Array(12);
  msg[0] = family === 4 ? AF_INET : AF_INET6;
  const replies = nl.request(RTM_GETROUTE, NLM_F_DUMP, msg, `ip -${family} route show table all`);
  return replies.filter((r) => r.type === RTM_NEWROUTE).map((r) => parseRoute(r.body));
}

/**
 * Every route of ours, both families, in the main table. Opens a socket in our netns when `nl`
 * is not given.
 *
 * @example
 * listOwnedRoutes(nl); // [{ family: 4, dst: "10.244.2.0/24", via: "192.0.2.12", oif: 2, ... }]
 */
export function listOwnedRoutes(nl?: Rtnl): OwnedRoute[] {
  return withRtnl(
    nl,
    (s) =>
      [4, 6].flatMap((f) =>
        listRoutes(s, f as Family).filter((r) =>
          r.protocol === ROUTE_PROTO && r.table === RT_TABLE_MAIN
        )
      ),
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

/** What the kernel answered to `ip route get IP`. */
export interface RouteAnswer {
  /** How many routes it answered with (one, for a unicast lookup). */
  readonly routes: number;
  readonly route: KernelRoute;
}

/**
 * `ip route get IP`: the route the kernel would use for a packet to `ip`. Throws the kernel's
 * refusal (e.g. "Network is unreachable") as a {@linkcode NetlinkError}.
 *
 * @example
 * routeGet(nl, "192.0.2.12").route.via; // undefined: on-link
 */
export function routeGet(nl: Rtnl, ip: string): RouteAnswer {
  const replies = nl.request(RTM_GETROUTE, 0, routeGetMessage(ip), `ip route get ${ip}`)
    .filter((r) => r.type === RTM_NEWROUTE);
  if (replies.length === 0) throw new NetlinkError(`ip route get ${ip}`, nl.netns, ENODATA);
  return { routes: replies.length, route: parseRoute(replies[0].body) };
}

/** The RTM_GETROUTE body of `ip route get IP`: a host-prefix rtmsg asking for the table too. */
export function routeGetMessage(ip: string): Uint8Array {
  const dst = ipBytes(ip);
  const msg = new Uint8Array(12);
  msg[0] = dst.length === 4 ? AF_INET : AF_INET6;
  msg[1] = dst.length * 8;
  new DataView(msg.buffer).setUint32(8, RTM_F_LOOKUP_TABLE, true);
  return concat([msg, attr(RTA_DST, dst)]);
}

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

/** Parses an RTM_NEWROUTE body (rtmsg + attributes). */
export function parseRoute(body: Uint8Array): KernelRoute {
  const family: Family = body[0] === AF_INET ? 4 : 6;
  const attrs = parseAttrs(body.subarray(12));
  const u32 = (a: Uint8Array | undefined) =>
    a && new DataView(a.buffer, a.byteOffset, a.byteLength).getUint32(0, true);
  const dst = attrs.get(RTA_DST) ?? new Uint8Array(family === 4 ? 4 : 16);
  const gateway = attrs.get(RTA_GATEWAY);
  const oif = u32(attrs.get(RTA_OIF));
  const flags = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(8, true);
  return {
    family,
    dst: `${ipText(dst)}/${body[1]}`,
    table: u32(attrs.get(RTA_TABLE)) ?? body[4],
    protocol: body[5],
    type: body[7],
    ...(gateway ? { via: ipText(gateway) } : {}),
    ...(oif ? { oif } : {}),
    onlink: (flags & RTNH_F_ONLINK) !== 0,
    multipath: attrs.has(RTA_MULTIPATH),
  };
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
