// The upstream NetworkPolicy e2e shape (kubernetes test/e2e/network/netpol) on the simulated
// cluster: namespaces x, y, z with pods a, b, c each, spread over three nodes, every pod serving
// TCP and UDP on ports 80 and 81; a probe of every (from, to) pair gives the truth table, which
// is compared with the expected one. Written from the e2e suite's description, not its code.
import type { Cluster, ClusterNode, Pod } from "./cluster.ts";
import { startCluster, waitFor } from "./cluster.ts";

/** The namespaces and pod names of the matrix. */
export const NAMESPACES = ["x", "y", "z"] as const;
export const POD_NAMES = ["a", "b", "c"] as const;
/** Every pod's servers (named as the e2e suite names them: serve-<port>-<protocol>). */
export const SERVED = { tcp: [80, 81], udp: [80, 81] } as const;

/** A protocol the matrix probes. */
export type Protocol = "TCP" | "UDP";

/** `x/a` style keys of the nine pods, in row order. */
export const ALL_PODS: readonly string[] = NAMESPACES.flatMap((ns) =>
  POD_NAMES.map((p) => `${ns}/${p}`)
);

/** The simulated cluster with the nine pods. */
export interface NetpolCluster extends AsyncDisposable {
  readonly cluster: Cluster;
  /** By `namespace/name`. */
  readonly pods: Map<string, Pod>;
  /** The node each pod name goes to in namespace `ns` (spread so every node holds a, b and c). */
  nodeFor(ns: string, pod: string): ClusterNode;
}

/**
 * Starts a 3-node API-mode cluster and the nine pods, namespaces labelled `ns: <name>`, pods
 * labelled `pod: <name>`, and waits until every agent is healthy (policy synced).
 */
export async function startNetpolCluster(
  opts: { dualStack?: boolean; log?: (line: string) => void } = {},
): Promise<NetpolCluster> {
  const cluster = await startCluster({
    nodes: 3,
    podsPerNode: 0,
    dualStack: opts.dualStack ?? true,
    mode: "api",
    probePorts: { tcp: [...SERVED.tcp], udp: [...SERVED.udp] },
    log: opts.log,
  });
  const pods = new Map<string, Pod>();
  const nodeFor = (ns: string, pod: string) =>
    cluster.nodes[
      (NAMESPACES.indexOf(ns as typeof NAMESPACES[number]) +
        POD_NAMES.indexOf(pod as typeof POD_NAMES[number])) % cluster.nodes.length
    ];
  try {
    for (const ns of NAMESPACES) {
      await cluster.apiPut("namespaces", { metadata: { name: ns, labels: { ns } } });
    }
    for (const pod of POD_NAMES) {
      // A pod name's three pods are on three different nodes; added one node at a time.
      await Promise.all(NAMESPACES.map(async (ns) => {
        pods.set(`${ns}/${pod}`, await addMatrixPod(cluster, nodeFor(ns, pod), ns, pod));
      }));
    }
    await waitFor("every agent healthy with policy synced", 20000, async () => {
      for (const n of cluster.nodes) if (!(await cluster.agentHealthy(n))) return false;
      return true;
    });
  } catch (err) {
    await cluster[Symbol.asyncDispose]();
    throw err;
  }
  return {
    cluster,
    pods,
    nodeFor,
    [Symbol.asyncDispose]: () => cluster[Symbol.asyncDispose](),
  };
}

/** Adds pod `ns/name` on `node` with the matrix's labels and named ports. */
export function addMatrixPod(
  cluster: Cluster,
  node: ClusterNode,
  ns: string,
  name: string,
  labels: Record<string, string> = { pod: name },
): Promise<Pod> {
  return cluster.addPod(node, {
    namespace: ns,
    name,
    labels,
    ports: [
      ...SERVED.tcp.map((port) => ({ name: `serve-${port}-tcp`, port, protocol: "TCP" as const })),
      ...SERVED.udp.map((port) => ({ name: `serve-${port}-udp`, port, protocol: "UDP" as const })),
    ],
  });
}

/** Which (from, to) pairs connect: `truth.get("x/a")!.get("y/b")`. */
export type Truth = Map<string, Map<string, boolean>>;

/**
 * The expected truth table, built like the e2e suite's reachability: start from a default, then
 * set pairs, where an empty namespace or pod in a selector means "every".
 */
export class Reachability {
  readonly truth: Truth;

  constructor(connected: boolean, pods: readonly string[] = ALL_PODS) {
    this.truth = new Map(pods.map((f) => [f, new Map(pods.map((t) => [t, connected]))]));
  }

  /** Sets every pair with the source matching `from` and the destination matching `to`. */
  expect(from: string, to: string, connected: boolean): this {
    for (const [f, row] of this.truth) {
      if (!matches(f, from)) continue;
      for (const t of row.keys()) if (matches(t, to)) row.set(t, connected);
    }
    return this;
  }

  /** Everything into `to` (ingress). */
  expectTo(to: string, connected: boolean): this {
    return this.expect("", to, connected);
  }

  /** Everything out of `from` (egress). */
  expectFrom(from: string, connected: boolean): this {
    return this.expect(from, "", connected);
  }

  /** A pod reaches itself whatever the policies (its own address is local to it). */
  allowLoopback(): this {
    for (const [f, row] of this.truth) row.set(f, true);
    return this;
  }
}

/** "" every pod; "x/" every pod of x; "/a" every pod a; "x/a" one pod. */
function matches(key: string, sel: string): boolean {
  if (sel === "") return true;
  const [ns, pod] = key.split("/");
  const [sns, spod] = sel.includes("/") ? sel.split("/") : [sel, ""];
  return (sns === "" || sns === ns) && (spod === "" || spod === pod);
}

/** How one matrix is probed. */
export interface ProbeSpec {
  readonly port: number;
  readonly protocol: Protocol;
  readonly family: 4 | 6;
  /** A connection attempt that gets no answer this fast counts as denied (default 1000 ms). */
  readonly timeoutMs?: number;
}

/** Probes every pair once (all at once) and returns what connected. */
export async function probeMatrix(nc: NetpolCluster, spec: ProbeSpec): Promise<Truth> {
  const truth: Truth = new Map();
  const jobs: Promise<void>[] = [];
  for (const [fromKey, from] of nc.pods) {
    const row = new Map<string, boolean>();
    truth.set(fromKey, row);
    for (const [toKey, to] of nc.pods) {
      const ip = to.ips.find((a) => a.includes(":") === (spec.family === 6));
      if (!ip) throw new Error(`${toKey} has no IPv${spec.family} address`);
      const o = { port: spec.port, timeoutMs: spec.timeoutMs ?? 1000 };
      jobs.push(
        (spec.protocol === "TCP" ? from.probe!.tcp(ip, o) : from.probe!.udp(ip, o))
          .then((r) => void row.set(toKey, r.ok)),
      );
    }
  }
  await Promise.all(jobs);
  return truth;
}

/**
 * Probes until the truth table equals `want` (policies take effect asynchronously) or
 * `deadlineMs` passes; throws with both tables and their difference. Returns the milliseconds
 * until the table matched.
 */
export async function expectMatrix(
  nc: NetpolCluster,
  want: Reachability,
  spec: ProbeSpec,
  deadlineMs = 8000,
): Promise<number> {
  const started = performance.now();
  let got: Truth;
  for (;;) {
    got = await probeMatrix(nc, spec);
    if (sameTruth(got, want.truth)) return Math.round(performance.now() - started);
    if (performance.now() - started > deadlineMs) break;
  }
  throw new Error(
    `Truth table for ${spec.protocol} ${spec.port} IPv${spec.family} differs after ${deadlineMs} ms` +
      ` (X = wrong; expected / observed, 1 = connects):\n${formatDiff(want.truth, got)}\n` +
      (await nc.cluster.logs(8)),
  );
}

function sameTruth(a: Truth, b: Truth): boolean {
  for (const [f, row] of a) {
    for (const [t, v] of row) if (b.get(f)?.get(t) !== v) return false;
  }
  return true;
}

/** The expected and observed tables side by side, mismatches marked X. */
export function formatDiff(want: Truth, got: Truth): string {
  const keys = [...want.keys()];
  const head = "from\\to " + keys.map((k) => k.padEnd(4)).join("");
  const table = (t: Truth, mark: boolean) =>
    keys.map((f) =>
      f.padEnd(8) +
      keys.map((k) => {
        const v = t.get(f)?.get(k);
        const wrong = mark && v !== want.get(f)?.get(k);
        return (wrong ? "X" : v ? "1" : ".").padEnd(4);
      }).join("")
    );
  const w = table(want, false), g = table(got, true);
  return [`${head.padEnd(46)}  ${head}`, ...w.map((line, i) => `${line.padEnd(46)}  ${g[i]}`)]
    .join("\n");
}

/** A NetworkPolicy object for the fake API server. */
export function policy(
  ns: string,
  name: string,
  spec: Record<string, unknown>,
): Record<string, unknown> {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace: ns, name },
    spec,
  };
}

/**
 * Milliseconds from `change()` (an API write) until the flow `from` -> `to` (TCP, IPv4) connects
 * (`connected`) or stops connecting, on the datapath: a probe leaves every 20 ms, each with a 1 s
 * timeout, and the answer is the send time of the first probe that sees the new state (a
 * connection counts only if it was answered within 100 ms, before TCP's first SYN retransmit).
 * Throws after `deadlineMs`. How fast a policy, pod or namespace event is enforced.
 */
export async function timeToFlip(
  nc: NetpolCluster,
  flow: { from: string; to: string; port?: number },
  connected: boolean,
  change: () => Promise<void>,
  deadlineMs = 5000,
): Promise<number> {
  const from = nc.pods.get(flow.from)!, to = nc.pods.get(flow.to)!;
  const started = performance.now();
  let found: number | undefined;
  const inFlight: Promise<void>[] = [];
  const probe = async (sentAt: number) => {
    const r = await from.probe!.tcp(to.ips[0], { port: flow.port ?? 80, timeoutMs: 1000 });
    const flipped = connected ? r.ok && performance.now() - sentAt < 100 : !r.ok;
    if (flipped && (found === undefined || sentAt < found)) found = sentAt;
  };
  await change();
  while (found === undefined) {
    if (performance.now() - started > deadlineMs) {
      await Promise.all(inFlight);
      if (found !== undefined) break;
      throw new Error(
        `${flow.from} -> ${flow.to} still ${
          connected ? "fails" : "connects"
        } ${deadlineMs} ms after the change`,
      );
    }
    inFlight.push(probe(performance.now()));
    await new Promise((r) => setTimeout(r, 20));
  }
  await Promise.all(inFlight); // an earlier probe may still report an earlier flip
  return Math.round(found! - started);
}
