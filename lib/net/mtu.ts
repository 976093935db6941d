// The node's underlay MTU, one function for the plugin and the agent: the MTU of the link that
// holds the node's address, else of the default route's link. Read over rtnetlink, which answers
// for this process's netns (/sys/class/net would show the root netns, not ours).
import type { Family } from "../ip/cidr.ts";
import { Rtnl } from "./netlink.ts";
import { listRoutes, RT_TABLE_MAIN } from "./route.ts";
import { addrList, linkList } from "./rtnl.ts";

/** What an MTU is taken to be when no link can be found to ask. */
export const FALLBACK_MTU = 1500;

/** The underlay link and its MTU. */
export interface Underlay {
  readonly mtu: number;
  /** The link it was read from; undefined when none was found (then `mtu` is the fallback). */
  readonly dev?: string;
}

/**
 * The MTU of the link holding `address` (the node's own IP, canonical text) when given and
 * found, else of the IPv4 default route's link, else of the IPv6 one, else 1500.
 *
 * @example
 * underlayMtu(nl, "192.0.2.11"); // { mtu: 1500, dev: "eth0" }
 */
export function underlayMtu(nl: Rtnl, address?: string): Underlay {
  let index = address === undefined
    ? undefined
    : addrList(nl).find((a) => a.address.slice(0, a.address.lastIndexOf("/")) === address)?.index;
  for (const family of [4, 6] as Family[]) {
    if (index !== undefined) break;
    const any = family === 4 ? "0.0.0.0/0" : "::/0";
    index = listRoutes(nl, family)
      .find((r) => r.table === RT_TABLE_MAIN && r.dst === any && r.oif !== undefined)?.oif;
  }
  const link = index === undefined ? undefined : linkList(nl).find((l) => l.index === index);
  return link && link.mtu > 0 ? { mtu: link.mtu, dev: link.name } : { mtu: FALLBACK_MTU };
}

/**
 * The plugin's MTU when its config names none: {@linkcode underlayMtu} of the default route in
 * this process's netns.
 */
export function defaultRouteMtu(): number {
  using nl = Rtnl.open();
  return underlayMtu(nl).mtu;
}
