// What a node of the simulated cluster actually has towards its peers, read with `ip` and
// `bridge` (not with the agent's own code): its routes under the agent's proto, and the
// neighbour and FDB entries on mycni.vxlan. The backend tests assert on it; the demo prints
// which backend each node pair uses from it.
import { run, runOutput } from "../../lib/process/run.ts";
import type { Cluster, ClusterNode } from "./cluster.ts";

/** The agent's route proto and VXLAN device, as the contract names them. */
export const ROUTE_PROTO = 77;
export const VXLAN_DEVICE = "mycni.vxlan";

/** One route of the agent's, as `ip -j route` shows it. */
export interface ShownRoute {
  readonly dst: string;
  readonly gateway?: string;
  readonly dev: string;
  readonly flags: readonly string[];
}

/** The agent's routes on `node`, both families. */
export async function agentRoutes(node: ClusterNode): Promise<ShownRoute[]> {
  return await shownRoutes(node, ["proto", String(ROUTE_PROTO)]);
}

/** `ip -j route show [filter...]` on `node`, both families. */
async function shownRoutes(node: ClusterNode, filter: readonly string[]): Promise<ShownRoute[]> {
  const out: ShownRoute[] = [];
  for (const family of ["-4", "-6"]) {
    const text = await run(["ip", "-n", node.nsName, "-j", family, "route", "show", ...filter]);
    out.push(...(JSON.parse(text || "[]") as ShownRoute[]));
  }
  return out;
}

/** Neighbour and FDB entries on mycni.vxlan ("" lines when there is no device). */
export interface VxlanEntries {
  readonly neighbours: string[];
  readonly fdb: string[];
}

/**
 * `ip neigh` and `bridge fdb` of mycni.vxlan on `node`, sorted, permanent ones only; none when
 * the device is not there. Any other failure throws: it is not "no entries".
 */
export async function vxlanEntries(node: ClusterNode): Promise<VxlanEntries> {
  const show = async (argv: string[]) => {
    const out = await runOutput(argv);
    if (out.code === 0) {
      return out.stdout.split("\n").map((l) => l.trim()).filter((l) => /permanent/i.test(l))
        .sort();
    }
    if (out.stderr.includes(`Cannot find device "${VXLAN_DEVICE}"`)) return [];
    throw new Error(`${argv.join(" ")} exited ${out.code}: ${out.stderr.trim()}`);
  };
  return {
    neighbours: await show(["ip", "-n", node.nsName, "neigh", "show", "dev", VXLAN_DEVICE]),
    fdb: await show(["bridge", "-n", node.nsName, "fdb", "show", "dev", VXLAN_DEVICE]),
  };
}

/** How `from` reaches `to`'s podCIDR of one family: by its route's device. */
export type PairBackend = "host-gw" | "vxlan" | "none";

/**
 * The backend of `from`'s route to each of `to`'s podCIDRs, in `to`'s podCIDR order.
 *
 * @example
 * await pairBackends(n1, n3); // ["vxlan", "vxlan"]
 */
export async function pairBackends(from: ClusterNode, to: ClusterNode): Promise<PairBackend[]> {
  // Every route, not only the agent's: a hand-wired cluster (vx0) has the same two kinds.
  const routes = await shownRoutes(from, []);
  return to.podCIDRs.map((cidr) => {
    const r = routes.find((r) => r.dst === cidr);
    return r === undefined ? "none" : [VXLAN_DEVICE, "vx0"].includes(r.dev) ? "vxlan" : "host-gw";
  });
}

/** The backend table of a cluster: one line per ordered node pair. */
export async function backendTable(cluster: Cluster): Promise<string[]> {
  const lines: string[] = [];
  for (const from of cluster.nodes) {
    for (const to of cluster.nodes) {
      if (from === to) continue;
      const seg = (n: ClusterNode) => "AB"[cluster.segmentOf(n)];
      const backends = await pairBackends(from, to);
      const per = to.podCIDRs.map((c, i) => `${c.includes(":") ? "IPv6" : "IPv4"} ${backends[i]}`);
      lines.push(
        `${from.name} (${seg(from)}) → ${to.name} (${seg(to)})`.padEnd(18) + per.join(", "),
      );
    }
  }
  return lines;
}

/** The counters {@linkcode fragmentationCounters} reads: every one must be there. */
const FRAGMENTATION_COUNTERS = {
  snmp: ["IpFragCreates", "IpFragFails", "IpReasmReqds"],
  snmp6: ["Ip6FragCreates", "Ip6FragFails", "Ip6ReasmReqds", "Icmp6OutPktTooBigs"],
} as const;

/**
 * IP fragmentation and "does not fit" ICMP counters of `node`'s namespace: if any of them moves
 * while a transfer runs, some packet did not fit a link (fragmented, reassembled, or refused).
 * Throws when a file cannot be read or a counter is missing: "no fragmentation" must never be
 * two empty readings compared.
 */
export async function fragmentationCounters(node: ClusterNode): Promise<Record<string, number>> {
  const cat = (file: string) => run(["nsenter", `--net=${node.netns}`, "--", "cat", file]);
  const [snmp, snmp6] = await Promise.all([cat("/proc/net/snmp"), cat("/proc/net/snmp6")]);
  const out: Record<string, number> = {};
  // /proc/net/snmp: a header line of names, then a line of values, per protocol.
  const lines = snmp.trim().split("\n");
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const [proto, ...names] = lines[i].split(/\s+/);
    const values = lines[i + 1].split(/\s+/).slice(1);
    names.forEach((n, k) => {
      const key = `${proto.replace(/:$/, "")}${n}`;
      if (/^Ip(FragCreates|FragFails|ReasmReqds)$|^IcmpMsgOutType3$/.test(key)) {
        out[key] = Number(values[k]);
      }
    });
  }
  for (const line of snmp6.split("\n")) {
    const [name, value] = line.trim().split(/\s+/);
    if ((FRAGMENTATION_COUNTERS.snmp6 as readonly string[]).includes(name)) {
      out[name] = Number(value);
    }
  }
  // IcmpMsg lists only the types sent so far: none of type 3 yet is a count of 0.
  out.IcmpMsgOutType3 ??= 0;
  const missing = [...FRAGMENTATION_COUNTERS.snmp, ...FRAGMENTATION_COUNTERS.snmp6]
    .filter((k) => !Number.isInteger(out[k]));
  if (missing.length > 0 || !Number.isInteger(out.IcmpMsgOutType3)) {
    throw new Error(
      `Cannot read the fragmentation counters of ${node.name}: ${missing.join(", ")} missing ` +
        `or not numbers in /proc/net/snmp{,6} (read ${JSON.stringify(out)})`,
    );
  }
  return out;
}
