// The agent's datapath towards other nodes, reconciled over one rtnetlink socket: the VXLAN
// device, the per-peer backend choice (asking the kernel for the route to each peer), and the
// routes, neighbours and FDB entries the choice asks for. Level-triggered like the rest of the
// sync: it lists what is ours in the kernel and changes only the difference, every change tried
// even when one fails, one log line per change and none for a reconcile that changed nothing.
import { canonicalIp } from "../ip/canonical.ts";
import type { Family } from "../ip/cidr.ts";
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log/logger.ts";
import { underlayMtu } from "../net/mtu.ts";
import {
  deleteFdb,
  deleteNeighbour,
  listFdb,
  listNeighbours,
  setFdb,
  setNeighbour,
} from "../net/neigh.ts";
import { NetlinkError, Rtnl } from "../net/netlink.ts";
import { deleteRoute, listOwnedRoutes, routeGetEach, setRoute } from "../net/route.ts";
import { type Dev, linkList } from "../net/rtnl.ts";
import { errnoText } from "../sys/syscall.ts";
import {
  deleteVxlan,
  ensureDeviceAddresses,
  ensureVxlan,
  VXLAN_DEVICE,
  type VxlanEnsured,
} from "../net/vxlan.ts";
import {
  type BackendMode,
  choiceReason,
  judgePath,
  ownVtepAddresses,
  type PathLookup,
  pathTargets,
  type PeerChoice,
  peerCidrs,
  planDatapath,
  podMtu,
  sameChoice,
  vtepMac,
  vxlanOverhead,
  type VxlanState,
} from "./backend.ts";
import type { AgentStatus } from "./health.ts";
import { planFdb, planNeighbours, planRoutes } from "./route_plan.ts";

/** What the datapath is built from (a slice of the agent's options). */
export interface DatapathOptions {
  readonly nodeName: string;
  readonly backend: BackendMode;
  readonly vxlanVni: number;
  readonly vxlanPort: number;
}

/** The agent's datapath towards its peers. */
export interface Datapath {
  /**
   * The pods' MTU for this node: decided the first time, again when `refresh` (a full resync
   * follows underlay changes), and logged whenever it changes.
   */
  mtu(own: NodeInfo, refresh: boolean): number;
  /**
   * Reconciles towards `nodes`. Throws (after trying every change) when the kernel refused any;
   * peers that get no route are in `status.unreachable`, not an exception.
   */
  reconcile(nodes: ReadonlyMap<string, NodeInfo>): void;
}

/**
 * The datapath of the agent `opts` describes, reporting into `status` and `log`.
 *
 * @example
 * const datapath = createDatapath(opts, status, log);
 * datapath.reconcile(nodes);
 */
export function createDatapath(
  opts: DatapathOptions,
  status: AgentStatus,
  log: Logger,
): Datapath {
  let socket: Rtnl | undefined;
  let mtuDecided: { key: string; mtu: number } | undefined;
  let skippedSeen = new Set<string>();
  let choicesSeen: Map<string, PeerChoice> | undefined;
  const pathCache = new Map<string | number, PathLookup>();

  const nl = () => socket ??= Rtnl.open();

  function mtu(own: NodeInfo, refresh: boolean): number {
    const local = underlayIp(own);
    if (mtuDecided && !refresh && mtuDecided.key === (local?.text ?? "")) return mtuDecided.mtu;
    const family: Family = local?.family ?? 4;
    const underlay = underlayMtu(nl(), local?.text);
    const decided = podMtu(opts.backend, underlay.mtu, family);
    if (decided !== mtuDecided?.mtu) {
      log.info("mtu decided", {
        mtu: decided,
        backend: opts.backend,
        underlayDev: underlay.dev ?? "(none found)",
        underlayMtu: underlay.mtu,
        overhead: opts.backend === "host-gw" ? 0 : vxlanOverhead(family),
      });
    }
    mtuDecided = { key: local?.text ?? "", mtu: decided };
    return decided;
  }

  /** The VXLAN device as the mode and this node's address allow, or why there is none. */
  function ensureDevice(own: NodeInfo | undefined, failures: string[]): VxlanState | undefined {
    if (opts.backend === "host-gw") {
      if (deleteVxlan(nl())) {
        log.info("vxlan device removed", { dev: VXLAN_DEVICE, reason: "--backend host-gw" });
      }
      return undefined;
    }
    const local = own && underlayIp(own);
    if (!own || !local) return { unavailable: "this node's own address is not known yet" };
    let ensured: VxlanEnsured;
    try {
      ensured = ensureVxlan(nl(), {
        vni: opts.vxlanVni,
        port: opts.vxlanPort,
        local: local.text,
        mac: vtepMac(local.text),
        mtu: mtu(own, false),
      });
      const addrs = ensureDeviceAddresses(nl(), ensured.dev, ownVtepAddresses(own.podCIDRs));
      for (const change of ensured.changes) {
        log.info("vxlan device changed", {
          dev: VXLAN_DEVICE,
          change,
          vni: opts.vxlanVni,
          port: opts.vxlanPort,
          local: local.text,
        });
      }
      for (const a of addrs.added) log.info("vtep address added", { dev: VXLAN_DEVICE, addr: a });
      for (const a of addrs.removed) {
        log.info("vtep address removed", { dev: VXLAN_DEVICE, addr: a });
      }
    } catch (err) {
      const error = (err as Error).message;
      failures.push(`VXLAN device: ${error}`);
      log.error("vxlan device failed", { dev: VXLAN_DEVICE, error });
      return { unavailable: error };
    }
    return { dev: ensured.dev.index, local: local.text, family: local.family };
  }

  /**
   * What the kernel says about each target, as PathLookups shared between resyncs (one per
   * device for on-link peers, one per gateway and device for the others): choices compare
   * them as they are, and a resync allocates nothing per peer for them.
   */
  function lookUp(targets: readonly string[]): Map<string, PathLookup> {
    const paths = new Map<string, PathLookup>();
    routeGetEach(nl(), targets).forEach((a, i) => {
      const key = a instanceof NetlinkError
        ? `error ${a.errno}`
        : a.routes === 1 && a.type === 1 && !a.multipath
        ? (a.via === undefined ? a.oif ?? 0 : `${a.via} ${a.oif ?? 0}`)
        : undefined;
      let path = key === undefined ? undefined : pathCache.get(key);
      if (path === undefined) {
        path = judgePath(a instanceof NetlinkError ? errnoText(a.errno) : a);
        if (key !== undefined) pathCache.set(key, path);
      }
      paths.set(targets[i], path);
    });
    return paths;
  }

  /**
   * Logs the backend choices: one summary line on the first reconcile (the routes it adds are
   * logged with their backend anyway), then a line per peer podCIDR whose choice changes. A peer
   * that gets nothing is a warning, once per peer and reason.
   */
  function reportChoices(choices: readonly PeerChoice[]): void {
    const first = choicesSeen === undefined;
    const seen = new Map<string, PeerChoice>();
    const unreachable: string[] = [];
    let hostGw = 0, vxlan = 0;
    for (const c of choices) {
      seen.set(c.dst, c);
      if (c.backend === "host-gw") hostGw++;
      else if (c.backend === "vxlan") vxlan++;
      else unreachable.push(`node ${c.node} podCIDR ${c.dst}: ${choiceReason(c)}`);
      const before = choicesSeen?.get(c.dst);
      if (before !== undefined && before.node === c.node && sameChoice(before, c)) continue;
      const fields = { node: c.node, podCIDR: c.dst, reason: choiceReason(c) };
      if (!c.backend) log.warn("peer unreachable", fields);
      else if (!first) log.info("peer backend", { ...fields, backend: c.backend });
    }
    if (first) {
      log.info("peer backends", {
        mode: opts.backend,
        hostGw,
        vxlan,
        unreachable: unreachable.length,
      });
    }
    choicesSeen = seen;
    status.routesHostGw = hostGw;
    status.routesVxlan = vxlan;
    status.unreachable = unreachable;
  }

  function reportSkipped(skipped: readonly { node: string; reason: string }[]): void {
    const seen = new Set<string>();
    for (const s of skipped) {
      const key = `${s.node}\n${s.reason}`;
      seen.add(key);
      if (!skippedSeen.has(key)) log.warn("node skipped", { node: s.node, reason: s.reason });
    }
    skippedSeen = seen;
  }

  function reconcile(nodes: ReadonlyMap<string, NodeInfo>): void {
    try {
      reconcileOnce(nodes);
    } catch (err) {
      // A socket that failed below netlink (not a refusal) is not trusted again.
      if (!(err instanceof NetlinkError) && !(err instanceof ChangesFailed)) {
        socket?.close();
        socket = undefined;
      }
      throw err;
    }
  }

  function reconcileOnce(nodes: ReadonlyMap<string, NodeInfo>): void {
    const failures: string[] = [];
    const own = nodes.get(opts.nodeName);
    const vxlan = ensureDevice(own, failures);
    const { peers, skipped } = peerCidrs(nodes.values(), opts.nodeName);
    reportSkipped(skipped);
    const paths = lookUp(pathTargets(opts.backend, peers));
    const plan = planDatapath({ mode: opts.backend, peers, paths, vxlan });
    reportChoices(plan.choices);

    const s = nl();
    const dev: Dev | undefined = vxlan && "dev" in vxlan
      ? { index: vxlan.dev, name: VXLAN_DEVICE }
      : undefined;
    const routeChanges = planRoutes(plan.routes, listOwnedRoutes(s));
    const neighbourChanges = dev ? planNeighbours(plan.neighbours, listNeighbours(s, dev)) : [];
    const fdbChanges = dev ? planFdb(plan.fdb, listFdb(s, dev)) : [];
    const names = deviceNames(s, dev);
    let made = 0;
    const attempt = (what: string, kind: string, fn: () => void, logged: () => void) => {
      try {
        fn();
        made++;
        logged();
      } catch (err) {
        if (!(err instanceof NetlinkError)) throw err;
        failures.push(`${what}: ${err.message}`);
        log.error(`${kind} change failed`, { change: what, error: err.message });
      }
    };

    // FDB and neighbours before the routes that use them (the kernel never has to resolve a
    // VTEP by itself); deletions in the reverse order.
    for (const c of fdbChanges) {
      if (c.op !== "set") continue;
      const e = c.entry;
      attempt(
        `fdb ${e.mac} dst ${e.dst}`,
        "fdb",
        () => setFdb(s, dev!, e),
        () =>
          log.info("fdb entry set", { dev: VXLAN_DEVICE, mac: e.mac, dst: e.dst, node: e.node }),
      );
    }
    for (const c of neighbourChanges) {
      if (c.op !== "set") continue;
      const e = c.entry;
      attempt(
        `neighbour ${e.ip} lladdr ${e.mac}`,
        "neighbour",
        () => setNeighbour(s, dev!, e),
        () => log.info("neighbour set", { dev: VXLAN_DEVICE, ip: e.ip, mac: e.mac, node: e.node }),
      );
    }
    for (const c of routeChanges) {
      const r = c.route;
      const name = r.oif === undefined ? undefined : names(r.oif);
      const via = r.oif === undefined ? {} : { dev: { index: r.oif, name: name! } };
      const fields = { dst: r.dst, via: r.via, ...(name ? { dev: name } : {}) };
      if (c.op === "delete") {
        attempt(
          `route del ${r.dst} via ${r.via}`,
          "route",
          () => void deleteRoute(s, { dst: r.dst, via: r.via, ...via }),
          () => log.info("route deleted", fields),
        );
        continue;
      }
      const { backend, onlink } = c.route;
      attempt(
        `route ${c.op} ${r.dst} via ${c.route.via}`,
        "route",
        () =>
          setRoute(s, { dst: r.dst, via: c.route.via, onlink, ...via }, {
            replace: c.op === "replace",
          }),
        () => log.info(c.op === "add" ? "route added" : "route replaced", { ...fields, backend }),
      );
    }
    for (const c of neighbourChanges) {
      if (c.op !== "delete") continue;
      const e = c.entry;
      attempt(
        `neighbour del ${e.ip}`,
        "neighbour",
        () => void deleteNeighbour(s, dev!, e.ip),
        () => log.info("neighbour deleted", { dev: VXLAN_DEVICE, ip: e.ip, mac: e.mac }),
      );
    }
    for (const c of fdbChanges) {
      if (c.op !== "delete") continue;
      const e = c.entry;
      attempt(
        `fdb del ${e.mac}`,
        "fdb",
        () => void deleteFdb(s, dev!, e),
        () => log.info("fdb entry deleted", { dev: VXLAN_DEVICE, mac: e.mac, dst: e.dst ?? "" }),
      );
    }

    status.routeChanges += made;
    status.routesProgrammed = failures.length === 0
      ? plan.routes.length
      : listOwnedRoutes(s).length;
    if (failures.length > 0) {
      const total = routeChanges.length + neighbourChanges.length + fdbChanges.length;
      throw new ChangesFailed(
        `${failures.length} of ${total} datapath changes failed, first: ${failures[0]}`,
      );
    }
  }

  return { mtu, reconcile };
}

/** Kernel refusals collected over one reconcile (every change was still tried). */
class ChangesFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ChangesFailed";
  }
}

/** This node's underlay address: its first valid one (the VXLAN local address). */
function underlayIp(own: NodeInfo): { family: Family; text: string } | undefined {
  for (const ip of own.ips) {
    const c = canonicalIp(ip);
    if (c) return c;
  }
  return undefined;
}

/** Device names by index for log lines and errors, listed once and only when needed. */
function deviceNames(nl: Rtnl, vxlan: Dev | undefined): (index: number) => string {
  let byIndex: Map<number, string> | undefined;
  return (index) => {
    if (vxlan && index === vxlan.index) return vxlan.name;
    byIndex ??= new Map(linkList(nl).map((l) => [l.index, l.name]));
    return byIndex.get(index) ?? `if${index}`;
  };
}
