// The connectivity matrix of a simulated cluster: ping + a real TCP connection for every pair
// that matters, with the source address the destination saw, judged against what mycni
// promises (pod and node sources are real inside the cluster, NATed to the node outside it).
// tests/integration/cluster_test.ts asserts on it; scripts/demo.ts prints it.
import type { Cluster, Host, Pod } from "./cluster.ts";

/** What kind of path a check exercises. */
export type PathKind =
  | "pod↔pod same node"
  | "pod↔pod across nodes"
  | "node→pod"
  | "pod→node"
  | "pod→external";

/** All kinds, in the order people read them. */
export const PATH_KINDS: readonly PathKind[] = [
  "pod↔pod same node",
  "pod↔pod across nodes",
  "node→pod",
  "pod→node",
  "pod→external",
];

/** One check: from a host to one address of another. */
export interface Check {
  readonly kind: PathKind;
  readonly family: 4 | 6;
  readonly from: Host;
  readonly fromIp: string;
  readonly to: Host;
  readonly toIp: string;
  /** Source addresses that are right at the destination. */
  readonly expectSeen: readonly string[];
  /** Whether a NATed source is the expected outcome (pod→external, pod→other node). */
  readonly natExpected: boolean;
  pingOk?: boolean;
  tcpOk?: boolean;
  seen?: string;
  error?: string;
}

/** Whether the check passed: ping and TCP through, and the right source seen. */
export function passed(c: Check): boolean {
  return !!c.pingOk && !!c.tcpOk && c.seen !== undefined && c.expectSeen.includes(c.seen);
}

/** The checks of the whole matrix for `cluster`, not yet run. */
export function planChecks(cluster: Cluster, families: readonly (4 | 6)[] = [4, 6]): Check[] {
  const checks: Check[] = [];
  const pods = cluster.pods();
  for (const family of families) {
    if (!cluster.families.includes(family)) continue;
    const at = (h: Host) => h.ips.find((ip) => ip.includes(":") === (family === 6));
    const nodeIp = (p: Pod) => at(p.node)!;
    for (const from of pods) {
      for (const to of pods) {
        if (from === to) continue;
        const same = from.node === to.node;
        checks.push({
          kind: same ? "pod↔pod same node" : "pod↔pod across nodes",
          family,
          from,
          fromIp: at(from)!,
          to,
          toIp: at(to)!,
          expectSeen: [at(from)!],
          natExpected: false,
        });
      }
      for (const node of cluster.nodes) {
        const own = node === from.node;
        // To its own node a pod is never NATed; to another node's address it leaves the pod
        // CIDRs, so the agent masquerades it (DESIGN.md), and the real source would be fine too.
        checks.push({
          kind: "pod→node",
          family,
          from,
          fromIp: at(from)!,
          to: node,
          toIp: at(node)!,
          expectSeen: own ? [at(from)!] : [nodeIp(from), at(from)!],
          natExpected: !own,
        });
      }
      checks.push({
        kind: "pod→external",
        family,
        from,
        fromIp: at(from)!,
        to: cluster.external,
        toIp: at(cluster.external)!,
        expectSeen: [nodeIp(from)],
        natExpected: true,
      });
    }
    for (const node of cluster.nodes) {
      for (const to of pods) {
        // A node talks from its underlay address, from the bridge to its own pods, or through
        // VXLAN from its VTEP address (its podCIDR's network address, as flannel's).
        const own = [
          at(node)!,
          ...node.plan.gateways.filter((g) => g.includes(":") === (family === 6)),
          ...node.podCIDRs.filter((c) => c.includes(":") === (family === 6))
            .map((c) => c.split("/")[0]),
        ];
        checks.push({
          kind: "node→pod",
          family,
          from: node,
          fromIp: at(node)!,
          to,
          toIp: at(to)!,
          expectSeen: own,
          natExpected: false,
        });
      }
    }
  }
  return checks;
}

/** Runs `checks` (a few at a time: the machine is small) and fills in their outcome. */
export async function runChecks(
  cluster: Cluster,
  checks: Check[],
  opts: { concurrency?: number } = {},
): Promise<Check[]> {
  let next = 0;
  const worker = async () => {
    while (next < checks.length) {
      const c = checks[next++];
      const [pingOk, tcp] = await Promise.all([
        cluster.ping(c.from, c.toIp),
        cluster.tcp(c.from, c.toIp),
      ]);
      c.pingOk = pingOk;
      c.tcpOk = tcp.ok;
      c.seen = tcp.seen;
      c.error = tcp.error;
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency ?? 8 }, worker));
  return checks;
}

/** One line per failed check, for an assertion message. */
export function describeFailures(checks: readonly Check[]): string {
  return checks.filter((c) => !passed(c)).map((c) =>
    `${c.kind} IPv${c.family}: ${c.from.name} (${c.fromIp}) → ${c.to.name} ${c.toIp}: ` +
    `ping ${c.pingOk ? "ok" : "FAILED"}, tcp ${
      c.tcpOk ? `ok, seen ${c.seen}` : `FAILED${c.error ? ` (${c.error})` : ""}`
    }${c.tcpOk && !c.expectSeen.includes(c.seen!) ? ` (want ${c.expectSeen.join(" or ")})` : ""}`
  ).join("\n");
}

/**
 * The matrix of one family as text: rows are sources, columns destinations, a cell says
 * whether ping and TCP got through with the right source address.
 */
export function formatMatrix(cluster: Cluster, checks: readonly Check[], family: 4 | 6): string {
  const mine = checks.filter((c) => c.family === family);
  const pods = cluster.pods();
  const rows: Host[] = [...pods, ...cluster.nodes];
  const cols: Host[] = [...pods, ...cluster.nodes, cluster.external];
  const at = (h: Host) => h.ips.find((ip) => ip.includes(":") === (family === 6)) ?? "";
  const cell = (from: Host, to: Host): string => {
    if (from === to) return "·";
    const c = mine.find((x) => x.from === from && x.to === to);
    if (!c) return "";
    if (!passed(c)) return "✗";
    // A pod seen as its node: masqueraded, as promised for destinations outside the pod CIDRs.
    return "node" in from && c.seen !== c.fromIp ? "✓nat" : "✓";
  };
  const rowLabel = (h: Host) => `${h.name.padEnd(5)} ${at(h)}`;
  const labelWidth = Math.max(...rows.map((h) => rowLabel(h).length)) + 2;
  const colWidth = Math.max(6, ...cols.map((h) => h.name.length + 2));
  const lines = [
    "from \\ to".padEnd(labelWidth) +
    cols.map((h) => h.name.padEnd(colWidth)).join(""),
  ];
  for (const r of rows) {
    lines.push(
      rowLabel(r).padEnd(labelWidth) + cols.map((c) => cell(r, c).padEnd(colWidth)).join(""),
    );
  }
  return lines.join("\n");
}

/** Per path kind: how many checks passed, and what the external host saw as the source. */
export function summarise(
  checks: readonly Check[],
): { kind: PathKind; family: 4 | 6; ok: number; total: number }[] {
  const out = [];
  for (const kind of PATH_KINDS) {
    for (const family of [4, 6] as const) {
      const mine = checks.filter((c) => c.kind === kind && c.family === family);
      if (mine.length) {
        out.push({ kind, family, ok: mine.filter(passed).length, total: mine.length });
      }
    }
  }
  return out;
}
