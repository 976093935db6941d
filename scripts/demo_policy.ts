// The demo's NetworkPolicy act: three tiers (web, api, db), one pod each on different nodes, the
// matrix of who reaches whom before and after three policies, `mycni-init explain` asked about
// one flow the policies deny, and `mycni-init flows` showing that flow's denied attempts with
// the policy that denied them. Needs the cluster in API mode (policies come from the API).
import { inNetns, runOutput } from "../lib/process/run.ts";
import type { Cluster, Pod } from "../tests/harness/cluster.ts";
import { PROBE_PORT } from "../tests/harness/probe_client.ts";

const REPO = new URL("../", import.meta.url).pathname;

/** Prints the act; returns whether every flow did what the policies say. */
export async function policyAct(
  cluster: Cluster,
  out: {
    line: (s: string) => void;
    bold: (s: string) => string;
    ok: (s: string) => string;
    bad: (s: string) => string;
  },
): Promise<boolean> {
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
  const matrix = async (): Promise<boolean[][]> =>
    await Promise.all(
      tiers.map((f) =>
        Promise.all(tiers.map(async (to) =>
          (await pods[f].probe!.tcp(pods[to].ips[0], { timeoutMs: 1000 })).ok
        ))
      ),
    );
  const print = (m: boolean[][], want?: boolean[][]) => {
    out.line(`  ${"from \\ to".padEnd(12)}${names.map((n) => n.padEnd(12)).join("")}`);
    for (const [i, row] of m.entries()) {
      const cells = row.map((v, j) => {
        const mark = v ? "✓" : "✗";
        const right = !want || want[i][j] === v;
        return (right ? (v ? out.ok(mark) : mark) : out.bad(mark + "!")) +
          " ".repeat(right ? 11 : 10);
      });
      out.line(`  ${names[i].padEnd(12)}${cells.join("")}`);
    }
  };
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

  out.line(`\n$ mycni-init explain --from web/web-0 --to db/db-0 --port ${PROBE_PORT}/TCP`);
  const explain = await runOutput(inNetns(cluster.nodes[0].netns, [
    `${REPO}bin/mycni-init`,
    "explain",
    "--from",
    "web/web-0",
    "--to",
    "db/db-0",
    "--port",
    `${PROBE_PORT}/TCP`,
  ]));
  for (const l of (explain.stdout + explain.stderr).trimEnd().split("\n")) out.line(`  ${l}`);
  const flowsOk = await showFlows(pods.db, out);
  const ok = JSON.stringify(after) === JSON.stringify(want) && explain.code === 1 && flowsOk;
  out.line(
    ok ? out.ok("every flow does what the policies say\n") : out.bad("some flows are wrong\n"),
  );
  return ok;
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
