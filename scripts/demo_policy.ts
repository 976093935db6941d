// The demo's policy acts. NetworkPolicy: three tiers (web, api, db), one pod each on different
// nodes, the matrix of who reaches whom before and after three policies, `mycni-init explain`
// asked about one flow the policies deny, and `mycni-init flows` showing that flow's denied
// attempts with the policy that denied them. ClusterNetworkPolicy: an Admin Deny that a
// namespace's NetworkPolicy cannot open, a Baseline default-deny that one does open, the matrix
// before and after, and explain for one flow of each. Needs the cluster in API mode (policies
// come from the API).
import { inNetns, runOutput } from "../lib/process/run.ts";
import type { Cluster, Pod } from "../tests/harness/cluster.ts";
import { waitEnforced } from "../tests/harness/netpol.ts";
import { PROBE_PORT } from "../tests/harness/probe_client.ts";

const REPO = new URL("../", import.meta.url).pathname;

/** Where an act prints, and how it colours. */
export interface ActOutput {
  readonly line: (s: string) => void;
  readonly bold: (s: string) => string;
  readonly ok: (s: string) => string;
  readonly bad: (s: string) => string;
}

/** Prints the act; returns whether every flow did what the policies say. */
export async function policyAct(cluster: Cluster, out: ActOutput): Promise<boolean> {
  out.line(out.bold("NetworkPolicy: three tiers, one pod each, TCP " + PROBE_PORT));
  const tiers = ["web", "api", "db"] as const;
  for (const t of tiers) {
    await cluster.apiPut("namespaces", { metadata: { name: t, labels: { tier: t } } });
  }
  const pods: Record<string, Pod> = {};
  for (const [i, t] of tiers.entries()) {
    pods[t] = await cluster.addPod(cluster.nodes[i % cluster.nodes.length], {
      namespace: t,
      name: `${t}-0`,
      labels: { app: t },
    });
  }
  const names = tiers.map((t) => `${t}/${t}-0`);
  const matrix = () => probeMatrix(tiers.map((t) => pods[t]));
  const print = (m: boolean[][], want?: boolean[][]) => printMatrix(out, names, m, want);
  const before = await matrix();
  out.line("before any policy:");
  print(before);

  const sel = (labels: Record<string, string>) => ({ matchLabels: labels });
  const policies = [
    {
      ns: "api",
      name: "from-web",
      spec: { podSelector: {}, ingress: [{ from: [{ namespaceSelector: sel({ tier: "web" }) }] }] },
    },
    {
      ns: "db",
      name: "from-api",
      spec: {
        podSelector: {},
        ingress: [{
          from: [{ namespaceSelector: sel({ tier: "api" }) }],
          ports: [{ port: PROBE_PORT }],
        }],
      },
    },
    { ns: "db", name: "no-egress", spec: { podSelector: {}, policyTypes: ["Egress"] } },
  ];
  out.line(
    "\napplying: api/from-web (api only from web), db/from-api (db only from api, port " +
      `${PROBE_PORT}), db/no-egress (db talks to no one)`,
  );
  for (const p of policies) {
    await cluster.apiPut("networkpolicies", {
      metadata: { namespace: p.ns, name: p.name },
      spec: p.spec,
    });
  }
  //           web    api    db
  const want = [
    [true, true, false], // from web
    [true, true, true], // from api (web is not isolated)
    [false, false, true], // from db (to itself only)
  ];
  let after = await matrix();
  for (let i = 0; i < 30 && JSON.stringify(after) !== JSON.stringify(want); i++) {
    await new Promise((r) => setTimeout(r, 200));
    after = await matrix();
  }
  out.line("after:");
  print(after, want);

  const explained = await explain(out, pods.web, "web/web-0", "db/db-0");
  const flowsOk = await showFlows(pods.db, out);
  const ok = JSON.stringify(after) === JSON.stringify(want) && explained === 1 && flowsOk;
  out.line(
    ok ? out.ok("every flow does what the policies say\n") : out.bad("some flows are wrong\n"),
  );
  return ok;
}

/**
 * The ClusterNetworkPolicy act: namespaces payments, shop and tools, one pod each. An Admin
 * policy lets only shop into payments, and payments' own allow-all NetworkPolicy cannot open it
 * to tools; a Baseline default-deny closes the three namespaces, and tools' NetworkPolicy opens
 * tools to shop. Prints the matrix before and after (once every agent enforces the writes) and
 * `mycni-init explain` for the Admin deny and a Baseline deny; returns whether all is as said.
 */
export async function clusterPolicyAct(cluster: Cluster, out: ActOutput): Promise<boolean> {
  out.line(
    out.bold(`ClusterNetworkPolicy: payments, shop and tools, one pod each, TCP ${PROBE_PORT}`),
  );
  const spaces = ["payments", "shop", "tools"] as const;
  const pods: Record<string, Pod> = {};
  for (const [i, ns] of spaces.entries()) {
    await cluster.apiPut("namespaces", { metadata: { name: ns, labels: { team: ns } } });
    // Across nodes and segments: n1, n3 (the other segment), n2.
    const node = cluster.nodes[[0, 2, 1][i] % cluster.nodes.length];
    pods[ns] = await cluster.addPod(node, { namespace: ns, name: `${ns}-0`, labels: { app: ns } });
  }
  const names = spaces.map((ns) => `${ns}/${ns}-0`);
  const matrix = () => probeMatrix(spaces.map((ns) => pods[ns]));
  await waitEnforced({ cluster });
  out.line("before any ClusterNetworkPolicy:");
  printMatrix(out, names, await matrix());

  const byName = (...ns: string[]) => ({
    matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ns }],
  });
  const cnp = (name: string, tier: string, priority: number, spec: Record<string, unknown>) => ({
    apiVersion: "policy.networking.k8s.io/v1alpha2",
    kind: "ClusterNetworkPolicy",
    metadata: { name },
    spec: { tier, priority, ...spec },
  });
  out.line(
    "\napplying: Admin payments-lockdown (priority 10: into payments Accept from shop, Deny " +
      "from everyone else), Baseline default-deny (priority 100: into payments, shop and tools " +
      "Deny from everyone), and two NetworkPolicies: payments/allow-all (everyone into payments) " +
      "and tools/from-shop (shop into tools)",
  );
  await cluster.apiPut(
    "clusternetworkpolicies",
    cnp("payments-lockdown", "Admin", 10, {
      subject: { namespaces: byName("payments") },
      ingress: [
        { name: "from-shop", action: "Accept", from: [{ namespaces: byName("shop") }] },
        { name: "no-one-else", action: "Deny", from: [{ namespaces: {} }] },
      ],
    }),
  );
  await cluster.apiPut(
    "clusternetworkpolicies",
    cnp("default-deny", "Baseline", 100, {
      subject: { namespaces: byName(...spaces) },
      ingress: [{ name: "deny-all", action: "Deny", from: [{ namespaces: {} }] }],
    }),
  );
  await cluster.apiPut("networkpolicies", {
    metadata: { namespace: "payments", name: "allow-all" },
    spec: { podSelector: {}, ingress: [{}] },
  });
  await cluster.apiPut("networkpolicies", {
    metadata: { namespace: "tools", name: "from-shop" },
    spec: {
      podSelector: {},
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "shop" } } }] }],
    },
  });
  const ms = await waitEnforced({ cluster });
  //           payments shop   tools
  const want = [
    [true, false, false], // from payments: shop and tools closed by the Baseline (tools: by its NP)
    [true, true, true], // from shop: Admin Accept into payments, tools' NP opens tools
    [false, false, true], // from tools: the Admin Deny; payments' allow-all cannot open it
  ];
  const after = await matrix();
  out.line(`after (every agent enforcing them ${ms} ms after the last write):`);
  printMatrix(out, names, after, want);
  const admin = await explain(out, pods.tools, "tools/tools-0", "payments/payments-0");
  const baseline = await explain(out, pods.payments, "payments/payments-0", "shop/shop-0");
  const ok = JSON.stringify(after) === JSON.stringify(want) && admin === 1 && baseline === 1;
  out.line(
    ok ? out.ok("every flow does what the tiers say\n") : out.bad("some flows are wrong\n"),
  );
  return ok;
}

/** One TCP attempt from every pod to every pod (at its IPv4 address), all at once. */
async function probeMatrix(pods: readonly Pod[]): Promise<boolean[][]> {
  return await Promise.all(
    pods.map((from) =>
      Promise.all(
        pods.map(async (to) => (await from.probe!.tcp(to.ips[0], { timeoutMs: 1000 })).ok),
      )
    ),
  );
}

/** The matrix as rows of ✓ and ✗; a cell that differs from `want` is marked "!". */
function printMatrix(out: ActOutput, names: readonly string[], m: boolean[][], want?: boolean[][]) {
  const width = Math.max(12, ...names.map((n) => n.length + 2));
  out.line(`  ${"from \\ to".padEnd(width)}${names.map((n) => n.padEnd(width)).join("")}`);
  for (const [i, row] of m.entries()) {
    const cells = row.map((v, j) => {
      const mark = v ? "✓" : "✗";
      const right = !want || want[i][j] === v;
      return (right ? (v ? out.ok(mark) : mark) : out.bad(mark + "!")) +
        " ".repeat(right ? width - 1 : width - 2);
    });
    out.line(`  ${names[i].padEnd(width)}${cells.join("")}`);
  }
}

/** Runs `mycni-init explain` on the source pod's node, prints it, returns its exit code. */
async function explain(
  out: ActOutput,
  source: Pod,
  from: string,
  to: string,
): Promise<number> {
  out.line(`\n$ mycni-init explain --from ${from} --to ${to} --port ${PROBE_PORT}/TCP`);
  const res = await runOutput(inNetns(source.node.netns, [
    `${REPO}bin/mycni-init`,
    "explain",
    "--from",
    from,
    "--to",
    to,
    "--port",
    `${PROBE_PORT}/TCP`,
  ]));
  for (const l of (res.stdout + res.stderr).trimEnd().split("\n")) out.line(`  ${l}`);
  return res.code;
}

/**
 * `mycni-init flows` on the db pod's node, where its ingress is enforced: the denied web -> db
 * attempts the matrix made, with the policy that denied them. Returns whether one is there.
 */
async function showFlows(
  db: Pod,
  out: { line: (s: string) => void; bold: (s: string) => string },
): Promise<boolean> {
  out.line(`\n$ mycni-init flows    ${out.bold(`(on ${db.node.name}, db-0's node)`)}`);
  const flows = await runOutput(inNetns(db.node.netns, [`${REPO}bin/mycni-init`, "flows"]));
  const lines = flows.stdout.trimEnd().split("\n").filter((l) => l.includes("web/web-0"));
  // The matrix asked more than once: the first record of each direction says it all.
  for (const l of lines.slice(0, 2)) out.line(`  ${l}`);
  if (flows.code !== 0) out.line(`  ${flows.stdout}${flows.stderr}`);
  return lines.some((l) => l.includes("-> db/db-0") && l.includes("by db/from-api"));
}
