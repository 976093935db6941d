// The upstream NetworkPolicy e2e shape (kubernetes test/e2e/network/netpol) on the simulated
// cluster: namespaces x, y, z with pods a, b, c each, spread over three nodes, every pod serving
// TCP and UDP on ports 80 and 81; a probe of every (from, to) pair gives the truth table, which
// is compared with the expected one. Written from the e2e suite's description, not its code.
// Unlike the e2e suite's, a table is probed once, after every agent reports enforcing the write
// (waitEnforced), and a ledger step refuses an expected table equal to the one before it: a
// check that polls until the table matches passes on the old table before anything is enforced.
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
  opts: {
    dualStack?: boolean;
    log?: (line: string) => void;
    /** More flags for every agent (e.g. `--policy-strict=false`). */
    agentArgs?: readonly string[];
  } = {},
): Promise<NetpolCluster> {
  const cluster = await startCluster({
    nodes: 3,
    podsPerNode: 0,
    dualStack: opts.dualStack ?? true,
    mode: "api",
    probePorts: { tcp: [...SERVED.tcp], udp: [...SERVED.udp] },
    log: opts.log,
    agentArgs: opts.agentArgs,
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

/** "TCP 80 IPv4": which table a spec probes. */
export function specName(spec: ProbeSpec): string {
  return `${spec.protocol} ${spec.port} IPv${spec.family}`;
}

/** Probes every pair once (all at once) and returns what connected. */
export async function probeMatrix(nc: NetpolCluster, spec: ProbeSpec): Promise<Truth> {
  const truth: Truth = new Map();
  const pairs: [string, string][] = [];
  for (const from of nc.pods.keys()) {
    truth.set(from, new Map());
    for (const to of nc.pods.keys()) pairs.push([from, to]);
  }
  for (const [from, to, ok] of await probePairs(nc, pairs, spec)) truth.get(from)!.set(to, ok);
  return truth;
}

/** One connection attempt per (from, to) pair, all at once, each on a new socket. */
async function probePairs(
  nc: NetpolCluster,
  pairs: readonly (readonly [string, string])[],
  spec: ProbeSpec,
): Promise<[string, string, boolean][]> {
  return await Promise.all(pairs.map(async ([fromKey, toKey]) => {
    const from = nc.pods.get(fromKey)!, to = nc.pods.get(toKey)!;
    const ip = to.ips.find((a) => a.includes(":") === (spec.family === 6));
    if (!ip) throw new Error(`${toKey} has no IPv${spec.family} address`);
    const o = { port: spec.port, timeoutMs: spec.timeoutMs ?? 1000 };
    const r = await (spec.protocol === "TCP" ? from.probe!.tcp(ip, o) : from.probe!.udp(ip, o));
    return [fromKey, toKey, r.ok] as [string, string, boolean];
  }));
}

/**
 * Waits until every agent (or those on `nodes`) enforces resourceVersion `rv` (default: the
 * newest write to nodes, pods, namespaces or policies the test made): its /healthz
 * `policy.resourceVersion` is at least `rv`, compared as numbers like etcd revisions. Returns the
 * milliseconds it took; throws after `timeoutMs` naming the agents behind and what they report.
 */
export async function waitEnforced(
  nc: Pick<NetpolCluster, "cluster">,
  rv: string = nc.cluster.policyWriteVersion(),
  opts: { nodes?: readonly ClusterNode[]; timeoutMs?: number } = {},
): Promise<number> {
  if (!/^[0-9]+$/.test(rv)) throw new Error(`waitEnforced wants a resourceVersion, got "${rv}"`);
  const started = performance.now();
  const timeoutMs = opts.timeoutMs ?? 15000;
  let behind = [...(opts.nodes ?? nc.cluster.nodes)];
  let seen = new Map<string, string>();
  while (behind.length > 0) {
    const reports = await Promise.all(behind.map((n) => nc.cluster.agentHealth(n)));
    seen = new Map(behind.map((n, i) => [n.name, JSON.stringify(reports[i] ?? "no answer")]));
    behind = behind.filter((_, i) => !atLeast(reports[i]?.policy?.resourceVersion ?? "", rv));
    if (behind.length === 0) break;
    if (performance.now() - started > timeoutMs) {
      throw new Error(
        `Gave up waiting ${timeoutMs} ms for every agent to enforce resourceVersion ${rv}: ` +
          behind.map((n) => `${n.name} reports ${seen.get(n.name)}`).join("; ") +
          (await nc.cluster.logs(8)),
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return Math.round(performance.now() - started);
}

/** Whether resourceVersion `a` is at least `b` (both decimal, as the fake API server's are). */
function atLeast(a: string, b: string): boolean {
  return /^[0-9]+$/.test(a) && BigInt(a) >= BigInt(b);
}

/** How one table check went. */
export interface MatrixCheck {
  readonly spec: ProbeSpec;
  /** From the first probe to the verdict. */
  readonly ms: number;
  /** Allowed pairs that needed a second or third attempt. */
  readonly retried: number;
}

/** Attempts a pair expected to connect gets in {@linkcode checkMatrix}. */
const ALLOWED_ATTEMPTS = 3;

/**
 * Probes the table once and throws unless it equals `want`. The caller has made sure the change
 * is enforced ({@linkcode waitEnforced}), so nothing here waits for it, and a table that matches
 * only later is a failure. Every attempt is a new socket (a new source port, so a new conntrack
 * entry whose first packet meets the rules in force now). A pair expected to be denied gets one
 * attempt: a retry could only hide a rule that came late. A pair expected to connect that did
 * not gets up to two more attempts, which can only hide loss that has nothing to do with the
 * rules (a SYN or answer delayed past the timeout on a loaded machine); a flow the rules deny
 * fails all three.
 */
export async function checkMatrix(
  nc: NetpolCluster,
  want: Reachability,
  spec: ProbeSpec,
): Promise<MatrixCheck> {
  const started = performance.now();
  const got = await probeMatrix(nc, spec);
  let retried = 0;
  for (let attempt = 1; attempt < ALLOWED_ATTEMPTS; attempt++) {
    const missing: [string, string][] = [];
    for (const [f, row] of want.truth) {
      for (const [t, ok] of row) if (ok && !got.get(f)!.get(t)) missing.push([f, t]);
    }
    if (missing.length === 0) break;
    if (attempt === 1) retried = missing.length;
    for (const [f, t, ok] of await probePairs(nc, missing, spec)) got.get(f)!.set(t, ok);
  }
  if (!sameTruth(got, want.truth)) {
    throw new Error(
      `Truth table for ${specName(spec)} differs (X = wrong; expected / observed, 1 = ` +
        `connects):\n${formatDiff(want.truth, got)}\n` + (await nc.cluster.logs(8)),
    );
  }
  return { spec, ms: Math.round(performance.now() - started), retried };
}

/** A table a ledger step checks after its change. */
export interface TableCheck {
  readonly probe: ProbeSpec;
  readonly want: Reachability;
  /**
   * The change is meant to leave this table as it was, and the check confirms it did: `want`
   * must equal the table before. Default false: `want` must differ from it, so the check cannot
   * pass on the table that held before the change.
   */
  readonly unchanged?: boolean;
  /**
   * The table that held before, where the ledger cannot know it: e.g. the change replaced the pod
   * behind a key, and the new pod starts out as a node without policies would leave it.
   */
  readonly before?: Reachability;
}

/** What one ledger step cost. */
export interface StepFigures {
  /** From the end of the API writes until every agent reported enforcing them. */
  readonly enforceMs: number;
  readonly checks: readonly MatrixCheck[];
}

/**
 * The tables the datapath holds, as far as the test knows, and the only way to change them: a
 * step is an API change, a wait until every agent enforces it, and one probe of each table it
 * names. A step's expected table must differ from the one before it (or say it is meant to stay
 * as it was), so no check passes on the old table; a table a step does not check is unknown
 * afterwards, and a later step that checks it without saying what held before is an error in the
 * test.
 */
export interface TruthLedger {
  step(
    label: string,
    change: () => Promise<unknown>,
    checks: readonly TableCheck[],
  ): Promise<StepFigures>;
  /**
   * `change` removed every policy (and undid every label change): waits for it, checks every
   * table known to differ from all-open opens again (TCP 80 IPv4 when none is), and from then on
   * knows every table all-open.
   */
  reset(label: string, change: () => Promise<unknown>): Promise<StepFigures>;
  /** Every step's figures so far. */
  readonly figures: readonly StepFigures[];
}

/**
 * A ledger that starts out knowing every table all-open (no policy yet).
 *
 * @example
 * const ledger = truthLedger(nc);
 * await ledger.step("deny x", () => apply([deny]), [{ probe: TCP80, want: closedX }]);
 */
export function truthLedger(nc: NetpolCluster): TruthLedger {
  const allOpen = () => new Reachability(true, [...nc.pods.keys()]);
  let known = new Map<string, { spec: ProbeSpec; truth: Truth }>();
  let othersOpen = true; // tables not in `known`: all-open (true) or unknown
  const figures: StepFigures[] = [];
  const before = (spec: ProbeSpec) =>
    known.get(specName(spec))?.truth ?? (othersOpen ? allOpen().truth : undefined);

  const enforce = async (label: string, change: () => Promise<unknown>, mustWrite: boolean) => {
    const rv0 = nc.cluster.policyWriteVersion();
    await change();
    const rv = nc.cluster.policyWriteVersion();
    if (mustWrite && rv === rv0) throw new Error(`${label}: the change wrote nothing to the API`);
    return rv === "" ? 0 : await waitEnforced(nc, rv);
  };
  const check = async (label: string, c: TableCheck) => {
    try {
      return await checkMatrix(nc, c.want, c.probe);
    } catch (err) {
      throw new Error(`${label}: ${(err as Error).message}`, { cause: err });
    }
  };

  return {
    figures,
    async step(label, change, checks) {
      const names = checks.map((c) => specName(c.probe));
      if (new Set(names).size !== names.length) {
        throw new Error(`${label}: a step checks each table once, got ${names.join(", ")}`);
      }
      if (checks.every((c) => c.unchanged)) {
        throw new Error(`${label}: a step must check at least one table its change changes`);
      }
      for (const c of checks) {
        const was = c.before?.truth ?? before(c.probe);
        const name = specName(c.probe);
        if (was === undefined) {
          throw new Error(
            `${label}: nothing says what the ${name} table held before this step ` +
              `(check it in the step before, or give "before")`,
          );
        }
        if (c.unchanged && !sameTruth(c.want.truth, was)) {
          throw new Error(
            `${label}: the ${name} table is marked unchanged but differs from the one before ` +
              `(before / expected):\n${formatDiff(was, c.want.truth)}`,
          );
        }
        if (!c.unchanged && sameTruth(c.want.truth, was)) {
          throw new Error(
            `${label}: the expected ${name} table is the one that held before the change, so ` +
              `its check would pass whether or not the change is enforced`,
          );
        }
      }
      known = new Map();
      othersOpen = false; // whatever happens below, only what is checked is known afterwards
      const enforceMs = await enforce(label, change, true);
      const done: MatrixCheck[] = [];
      for (const c of checks) done.push(await check(label, c));
      // Copies: the test may go on to change its Reachability objects.
      known = new Map(
        checks.map((c) => [specName(c.probe), {
          spec: c.probe,
          truth: structuredClone(c.want.truth),
        }]),
      );
      const f = { enforceMs, checks: done };
      figures.push(f);
      return f;
    },
    async reset(label, change) {
      const closed = [...known.values()].filter((k) => !sameTruth(k.truth, allOpen().truth));
      known = new Map();
      othersOpen = false;
      // Nothing to remove (a case that removed its own) still waits for the newest write.
      const enforceMs = await enforce(label, change, false);
      const specs: ProbeSpec[] = closed.length > 0
        ? closed.map((k) => k.spec)
        : [{ port: 80, protocol: "TCP", family: 4 }];
      const done: MatrixCheck[] = [];
      for (const probe of specs) done.push(await check(label, { probe, want: allOpen() }));
      othersOpen = true;
      const f = { enforceMs, checks: done };
      figures.push(f);
      return f;
    },
  };
}

function sameTruth(a: Truth, b: Truth): boolean {
  if (a.size !== b.size) return false;
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
  change: () => Promise<unknown>,
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
