// The agent's datapath towards other nodes: the VXLAN device, the per-peer backend choice
// (asking the kernel for the route to each peer), and the routes, neighbours and FDB entries
// the choice asks for. Level-triggered like the rest of the sync: it lists what is ours in the
// kernel and changes only the difference, every change tried even when one fails, one log line
// per change and none for a reconcile that changed nothing.
import type { Family } from "../ip/cidr.ts";
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log/logger.ts";
import { NetlinkError } from "../net/netlink.ts";
import type { Dev } from "../net/rtnl.ts";
import { errnoText } from "../sys/syscall.ts";
import { VXLAN_DEVICE } from "../net/vxlan.ts";
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
import { canonicalIp } from "../ip/canonical.ts";
import { type DatapathKernel, rtnlKernel } from "./datapath_kernel.ts";
import {
  type FdbChange,
  type NeighbourChange,
  planFdb,
  planNeighbours,
  planRoutes,
  type RouteChange,
} from "./route_plan.ts";
import type { StepReport } from "./steps.ts";

/** What the datapath is built from (a slice of the agent's options). */
export interface DatapathOptions {
  readonly nodeName: string;
  readonly backend: BackendMode;
  readonly vxlanVni: number;
  readonly vxlanPort: number;
}

/** What one reconcile of the datapath did and found. */
export interface RoutesReport extends StepReport {
  /** Routes, neighbours and FDB entries the kernel took. */
  readonly changes: number;
  /** Our routes in the kernel now. */
  readonly routes: number;
  /** Peer podCIDRs routed host-gw and through VXLAN. */
  readonly hostGw: number;
  readonly vxlan: number;
  /** Peer podCIDRs that get no route, each with why (not a problem of the reconcile). */
  readonly unreachable: readonly string[];
}

/** The agent's datapath towards its peers. */
export interface Datapath {
  /**
   * The pods' MTU for this node: decided the first time, again when `refresh` (a full resync
   * follows underlay changes), and logged whenever it changes.
   */
  mtu(own: NodeInfo, refresh: boolean): number;
  /**
   * Reconciles towards `nodes`, trying every change; the kernel's refusals are the report's
   * `problem`. Throws only when the kernel cannot be asked at all.
   */
  run(nodes: ReadonlyMap<string, NodeInfo>): RoutesReport;
}

/**
 * The datapath of the agent `opts` describes, logging its changes to `log`.
 *
 * @example
 * const datapath = createDatapath(opts, log);
 * datapath.run(nodes); // { changes: 2, routes: 2, hostGw: 2, vxlan: 0, unreachable: [] }
 */
export function createDatapath(
  opts: DatapathOptions,
  log: Logger,
  kernel: DatapathKernel = rtnlKernel(),
): Datapath {
  const mtu = createMtu(opts.backend, kernel, log);
  const device = createDevice(opts, kernel, mtu, log);
  const lookUp = createPathLookup(kernel);
  const choices = createChoiceReport(opts.backend, log);
  const skipped = createSkipReport(log);

  function reconcile(nodes: ReadonlyMap<string, NodeInfo>): RoutesReport {
    const own = nodes.get(opts.nodeName);
    const vxlan = device.ensure(own);
    const { peers, skipped: skips } = peerCidrs(nodes.values(), opts.nodeName);
    skipped.report(skips);
    const paths = lookUp(pathTargets(opts.backend, peers));
    const plan = planDatapath({ mode: opts.backend, peers, paths, vxlan: vxlan.state });
    const backends = choices.report(plan.choices);

    const dev: Dev | undefined = vxlan.state && "dev" in vxlan.state
      ? { index: vxlan.state.dev, name: VXLAN_DEVICE }
      : undefined;
    const routes = planRoutes(plan.routes, kernel.listOwnedRoutes());
    const neighbours = dev ? planNeighbours(plan.neighbours, kernel.listNeighbours(dev)) : [];
    const fdb = dev ? planFdb(plan.fdb, kernel.listFdb(dev)) : [];
    const changes = orderedChanges(kernel, dev, { routes, neighbours, fdb });
    const done = applyChanges(changes, log);
    const failures = [...vxlan.failures, ...done.failures];
    return {
      changes: done.made,
      routes: failures.length === 0 ? plan.routes.length : kernel.listOwnedRoutes().length,
      ...backends,
      ...(failures.length > 0
        ? {
          problem: `${failures.length} of ${changes.length} datapath changes failed, first: ${
            failures[0]
          }`,
        }
        : {}),
    };
  }

  return {
    mtu,
    run(nodes) {
      try {
        return reconcile(nodes);
      } catch (err) {
        // A socket that failed below netlink (not a refusal) is not trusted again.
        if (!(err instanceof NetlinkError)) kernel.reset();
        throw err;
      }
    },
  };
}

/** The pods' MTU, decided once and again on request (see {@linkcode Datapath.mtu}). */
function createMtu(mode: BackendMode, kernel: DatapathKernel, log: Logger) {
  let decided: { key: string; mtu: number } | undefined;
  return (own: NodeInfo, refresh: boolean): number => {
    const local = underlayIp(own);
    if (decided && !refresh && decided.key === (local?.text ?? "")) return decided.mtu;
    const family: Family = local?.family ?? 4;
    const underlay = kernel.underlayMtu(local?.text);
    const mtu = podMtu(mode, underlay.mtu, family);
    if (mtu !== decided?.mtu) {
      log.info("mtu decided", {
        mtu,
        backend: mode,
        underlayDev: underlay.dev ?? "(none found)",
        underlayMtu: underlay.mtu,
        overhead: mode === "host-gw" ? 0 : vxlanOverhead(family),
      });
    }
    decided = { key: local?.text ?? "", mtu };
    return mtu;
  };
}

/** The VXLAN device as the mode and this node's address allow, or why there is none. */
function createDevice(
  opts: DatapathOptions,
  kernel: DatapathKernel,
  mtu: (own: NodeInfo, refresh: boolean) => number,
  log: Logger,
) {
  const fields = (local: string) => ({
    dev: VXLAN_DEVICE,
    vni: opts.vxlanVni,
    port: opts.vxlanPort,
    local,
  });
  return {
    ensure(own: NodeInfo | undefined): { state?: VxlanState; failures: string[] } {
      if (opts.backend === "host-gw") {
        if (kernel.deleteVxlan()) {
          log.info("vxlan device removed", { dev: VXLAN_DEVICE, reason: "--backend host-gw" });
        }
        return { failures: [] };
      }
      const local = own && underlayIp(own);
      if (!own || !local) {
        return { state: { unavailable: "this node's own address is not known yet" }, failures: [] };
      }
      try {
        const ensured = kernel.ensureVxlan({
          vni: opts.vxlanVni,
          port: opts.vxlanPort,
          local: local.text,
          mac: vtepMac(local.text),
          mtu: mtu(own, false),
        });
        const addrs = kernel.ensureDeviceAddresses(ensured.dev, ownVtepAddresses(own.podCIDRs));
        for (const change of ensured.changes) {
          log.info("vxlan device changed", { ...fields(local.text), change });
        }
        for (const a of addrs.added) log.info("vtep address added", { dev: VXLAN_DEVICE, addr: a });
        for (const a of addrs.removed) {
          log.info("vtep address removed", { dev: VXLAN_DEVICE, addr: a });
        }
        return {
          state: { dev: ensured.dev.index, local: local.text, family: local.family },
          failures: [],
        };
      } catch (err) {
        const error = (err as Error).message;
        log.error("vxlan device failed", { dev: VXLAN_DEVICE, error });
        return { state: { unavailable: error }, failures: [`VXLAN device: ${error}`] };
      }
    },
  };
}

/**
 * What the kernel says about each target, as PathLookups shared between resyncs (one per
 * device for on-link peers, one per gateway and device for the others): choices compare
 * them as they are, and a resync allocates nothing per peer for them.
 */
function createPathLookup(kernel: DatapathKernel) {
  const cache = new Map<string | number, PathLookup>();
  return (targets: readonly string[]): Map<string, PathLookup> => {
    const paths = new Map<string, PathLookup>();
    kernel.routeGetEach(targets).forEach((a, i) => {
      const key = a instanceof NetlinkError
        ? `error ${a.errno}`
        : a.routes === 1 && a.type === 1 && !a.multipath
        ? (a.via === undefined ? a.oif ?? 0 : `${a.via} ${a.oif ?? 0}`)
        : undefined;
      let path = key === undefined ? undefined : cache.get(key);
      if (path === undefined) {
        path = judgePath(a instanceof NetlinkError ? errnoText(a.errno) : a);
        if (key !== undefined) cache.set(key, path);
      }
      paths.set(targets[i], path);
    });
    return paths;
  };
}

/**
 * Logs the backend choices: one summary line on the first reconcile (the routes it adds are
 * logged with their backend anyway), then a line per peer podCIDR whose choice changes. A peer
 * that gets nothing is a warning, once per peer and reason. Returns the counts per backend.
 */
function createChoiceReport(mode: BackendMode, log: Logger) {
  let seen: Map<string, PeerChoice> | undefined;
  return {
    report(choices: readonly PeerChoice[]) {
      const first = seen === undefined;
      const now = new Map<string, PeerChoice>();
      const unreachable: string[] = [];
      let hostGw = 0, vxlan = 0;
      for (const c of choices) {
        now.set(c.dst, c);
        if (c.backend === "host-gw") hostGw++;
        else if (c.backend === "vxlan") vxlan++;
        else unreachable.push(`node ${c.node} podCIDR ${c.dst}: ${choiceReason(c)}`);
        const before = seen?.get(c.dst);
        if (before !== undefined && before.node === c.node && sameChoice(before, c)) continue;
        const fields = { node: c.node, podCIDR: c.dst, reason: choiceReason(c) };
        if (!c.backend) log.warn("peer unreachable", fields);
        else if (!first) log.info("peer backend", { ...fields, backend: c.backend });
      }
      if (first) {
        log.info("peer backends", { mode, hostGw, vxlan, unreachable: unreachable.length });
      }
      seen = now;
      return { hostGw, vxlan, unreachable };
    },
  };
}

/** Warns about each node skipped (no podCIDR, no address), once per node and reason. */
function createSkipReport(log: Logger) {
  let seen = new Set<string>();
  return {
    report(skipped: readonly { node: string; reason: string }[]): void {
      const now = new Set<string>();
      for (const s of skipped) {
        const key = `${s.node}\n${s.reason}`;
        now.add(key);
        if (!seen.has(key)) log.warn("node skipped", { node: s.node, reason: s.reason });
      }
      seen = now;
    },
  };
}

/** One kernel change: what it is (for errors), how to make it, and its log line once made. */
export interface Change {
  readonly kind: "fdb" | "neighbour" | "route";
  readonly what: string;
  readonly apply: () => void;
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

/**
 * The planned changes in the order they are made: FDB and neighbours before the routes that
 * use them (the kernel never has to resolve a VTEP by itself), deletions in the reverse order.
 */
function orderedChanges(
  kernel: DatapathKernel,
  dev: Dev | undefined,
  planned: {
    readonly routes: readonly RouteChange[];
    readonly neighbours: readonly NeighbourChange[];
    readonly fdb: readonly FdbChange[];
  },
): Change[] {
  const names = deviceNames(kernel, dev);
  const neighbour = (c: NeighbourChange) => neighbourChange(kernel, dev!, c);
  const fdb = (c: FdbChange) => fdbChange(kernel, dev!, c);
  return [
    ...planned.fdb.filter((c) => c.op === "set").map(fdb),
    ...planned.neighbours.filter((c) => c.op === "set").map(neighbour),
    ...planned.routes.map((c) => routeChange(kernel, names, c)),
    ...planned.neighbours.filter((c) => c.op === "delete").map(neighbour),
    ...planned.fdb.filter((c) => c.op === "delete").map(fdb),
  ];
}

function fdbChange(kernel: DatapathKernel, dev: Dev, c: FdbChange): Change {
  const e = c.entry;
  if (c.op === "set") {
    return {
      kind: "fdb",
      what: `fdb ${c.entry.mac} dst ${c.entry.dst}`,
      apply: () => kernel.setFdb(dev, c.entry),
      msg: "fdb entry set",
      fields: { dev: VXLAN_DEVICE, mac: e.mac, dst: e.dst, node: c.entry.node },
    };
  }
  return {
    kind: "fdb",
    what: `fdb del ${e.mac}`,
    apply: () => void kernel.deleteFdb(dev, e),
    msg: "fdb entry deleted",
    fields: { dev: VXLAN_DEVICE, mac: e.mac, dst: e.dst ?? "" },
  };
}

function neighbourChange(kernel: DatapathKernel, dev: Dev, c: NeighbourChange): Change {
  const e = c.entry;
  if (c.op === "set") {
    return {
      kind: "neighbour",
      what: `neighbour ${e.ip} lladdr ${e.mac}`,
      apply: () => kernel.setNeighbour(dev, c.entry),
      msg: "neighbour set",
      fields: { dev: VXLAN_DEVICE, ip: e.ip, mac: e.mac, node: c.entry.node },
    };
  }
  return {
    kind: "neighbour",
    what: `neighbour del ${e.ip}`,
    apply: () => void kernel.deleteNeighbour(dev, e.ip),
    msg: "neighbour deleted",
    fields: { dev: VXLAN_DEVICE, ip: e.ip, mac: e.mac },
  };
}

function routeChange(
  kernel: DatapathKernel,
  names: (index: number) => string,
  c: RouteChange,
): Change {
  const r = c.route;
  const name = r.oif === undefined ? undefined : names(r.oif);
  const via = r.oif === undefined ? {} : { dev: { index: r.oif, name: name! } };
  const fields = { dst: r.dst, via: r.via, ...(name ? { dev: name } : {}) };
  if (c.op === "delete") {
    return {
      kind: "route",
      what: `route del ${r.dst} via ${r.via}`,
      apply: () => void kernel.deleteRoute({ dst: r.dst, via: r.via, ...via }),
      msg: "route deleted",
      fields,
    };
  }
  const { backend, onlink } = c.route;
  return {
    kind: "route",
    what: `route ${c.op} ${r.dst} via ${c.route.via}`,
    apply: () =>
      kernel.setRoute({ dst: r.dst, via: c.route.via, onlink, ...via }, {
        replace: c.op === "replace",
      }),
    msg: c.op === "add" ? "route added" : "route replaced",
    fields: { ...fields, backend },
  };
}

/**
 * Makes `changes` in order, each tried even when one before it was refused: a refusal is
 * logged and counted, anything else (the socket itself failing) is thrown.
 *
 * @example
 * applyChanges(changes, log); // { made: 3, failures: ["route add 10.244.4.0/24 via ...: File exists"] }
 */
export function applyChanges(
  changes: readonly Change[],
  log: Logger,
): { made: number; failures: string[] } {
  let made = 0;
  const failures: string[] = [];
  for (const c of changes) {
    try {
      c.apply();
    } catch (err) {
      if (!(err instanceof NetlinkError)) throw err;
      failures.push(`${c.what}: ${err.message}`);
      log.error(`${c.kind} change failed`, { change: c.what, error: err.message });
      continue;
    }
    made++;
    log.info(c.msg, c.fields);
  }
  return { made, failures };
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
function deviceNames(kernel: DatapathKernel, vxlan: Dev | undefined): (index: number) => string {
  let byIndex: Map<number, string> | undefined;
  return (index) => {
    if (vxlan && index === vxlan.index) return vxlan.name;
    byIndex ??= kernel.linkNames();
    return byIndex.get(index) ?? `if${index}`;
  };
}
