// What the agent's datapath (lib/node/datapath.ts) asks of the kernel, as one small interface
// over lib/net's rtnetlink calls: the real one speaks over one socket, opened on first use; the
// unit tests give an in-memory fake.
import { type Underlay, underlayMtu } from "../net/mtu.ts";
import {
  deleteFdb,
  deleteNeighbour,
  type FdbEntry,
  listFdb,
  listNeighbours,
  type Neighbour,
  setFdb,
  setNeighbour,
} from "../net/neigh.ts";
import { type NetlinkError, Rtnl } from "../net/netlink.ts";
import {
  deleteRoute,
  listOwnedRoutes,
  type OwnedRoute,
  type RouteAnswer,
  routeGetEach,
  type RouteSpec,
  setRoute,
} from "../net/route.ts";
import { type Dev, linkList } from "../net/rtnl.ts";
import {
  deleteVxlan,
  ensureDeviceAddresses,
  ensureVxlan,
  type VxlanEnsured,
  type VxlanSpec,
} from "../net/vxlan.ts";

/** The rtnetlink operations of the datapath, each as its lib/net function describes it. */
export interface DatapathKernel {
  underlayMtu(address?: string): Underlay;
  ensureVxlan(spec: VxlanSpec): VxlanEnsured;
  deleteVxlan(): boolean;
  ensureDeviceAddresses(dev: Dev, cidrs: readonly string[]): { added: string[]; removed: string[] };
  routeGetEach(ips: readonly string[]): (RouteAnswer | NetlinkError)[];
  listOwnedRoutes(): OwnedRoute[];
  listNeighbours(dev: Dev): Neighbour[];
  listFdb(dev: Dev): FdbEntry[];
  /** Every link's name by index. */
  linkNames(): Map<number, string>;
  setRoute(route: RouteSpec, opts: { replace: boolean }): void;
  deleteRoute(route: Omit<RouteSpec, "via"> & { via?: string }): boolean;
  setNeighbour(dev: Dev, n: { ip: string; mac: string }): void;
  deleteNeighbour(dev: Dev, ip: string): boolean;
  setFdb(dev: Dev, e: { mac: string; dst: string }): void;
  deleteFdb(dev: Dev, e: { mac: string; dst?: string }): boolean;
  /** Forgets the socket (it failed below netlink): the next call opens a new one. */
  reset(): void;
}

/**
 * The datapath's kernel over rtnetlink in this process's network namespace.
 *
 * @example
 * const kernel = rtnlKernel();
 * kernel.listOwnedRoutes(); // [{ dst: "10.244.2.0/24", via: "192.0.2.12", ... }]
 */
export function rtnlKernel(): DatapathKernel {
  let socket: Rtnl | undefined;
  const nl = () => socket ??= Rtnl.open();
  return {
    underlayMtu: (address) => underlayMtu(nl(), address),
    ensureVxlan: (spec) => ensureVxlan(nl(), spec),
    deleteVxlan: () => deleteVxlan(nl()),
    ensureDeviceAddresses: (dev, cidrs) => ensureDeviceAddresses(nl(), dev, cidrs),
    routeGetEach: (ips) => routeGetEach(nl(), ips),
    listOwnedRoutes: () => listOwnedRoutes(nl()),
    listNeighbours: (dev) => listNeighbours(nl(), dev),
    listFdb: (dev) => listFdb(nl(), dev),
    linkNames: () => new Map(linkList(nl()).map((l) => [l.index, l.name])),
    setRoute: (route, opts) => setRoute(nl(), route, opts),
    deleteRoute: (route) => deleteRoute(nl(), route),
    setNeighbour: (dev, n) => setNeighbour(nl(), dev, n),
    deleteNeighbour: (dev, ip) => deleteNeighbour(nl(), dev, ip),
    setFdb: (dev, e) => setFdb(nl(), dev, e),
    deleteFdb: (dev, e) => deleteFdb(nl(), dev, e),
    reset() {
      socket?.close();
      socket = undefined;
    },
  };
}
