// The flow log on the simulated cluster (DESIGN.md "contract — flow log"), the real agent on every
// node at --flow-log-rate 20: an ingress denial is recorded on the destination's node and an
// egress denial on the source's, each with addresses, port, protocol, both pods and the policy,
// as JSON lines in the agent's log, on /flows and through `mycni-init flows [--json]`; a burst
// over the rate records at most the rate and counts the rest; the agent killed and started
// again: enforcement never pauses (the table stays in the kernel), the log resumes. A
// ClusterNetworkPolicy Deny is recorded with its name and rule by the agent's own rendering of
// it, in the flow lab's kernel (the agent does not read ClusterNetworkPolicies from the API in
// this tree yet).
import type { FlowRecord } from "../../lib/node/flow_log.ts";
import { attributionOf } from "../../lib/node/flow_log_source.ts";
import { desiredTable } from "../../lib/node/desired_table.ts";
import { FlowLog } from "../../lib/node/flow_log.ts";
import { NflogSubscriber } from "../../lib/net/nflog.ts";
import { renderFullTable } from "../../lib/nft/ruleset.ts";
import { compilePolicies } from "../../lib/policy/compile.ts";
import { FLOW_LOG_GROUP } from "../../lib/policy/flow_log_rules.ts";
import { policyObjects } from "../../lib/policy/nft_rules.ts";
import { inNetns, run } from "../../lib/process/run.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import type { ClusterNode, Pod } from "../harness/cluster.ts";
import { flowLab, LAB, loadTable, sendFlows } from "../harness/flow_lab.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import { type NetpolCluster, policy, startNetpolCluster, waitEnforced } from "../harness/netpol.ts";
import { cnp, withCluster } from "../unit/policy/cnp_fixtures.ts";
import { namespace, pod as podInfo } from "../unit/policy/fixtures.ts";

const RATE = 20;
const HEALTH = "http://127.0.0.1:9749";

/** The records the agent on `node` keeps (its /flows). */
async function flowsOn(node: ClusterNode): Promise<FlowRecord[]> {
  const res = await node.probe!.http(`${HEALTH}/flows`, { timeoutMs: 2000 });
  if (res.status !== 200) throw new Error(`/flows on ${node.name}: ${res.status} ${res.body}`);
  return (res.body ?? "").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

/** Waits for a record on `node` matching `want`; returns it. */
async function recordOn(
  node: ClusterNode,
  want: (r: FlowRecord) => boolean,
  timeoutMs = 5000,
): Promise<FlowRecord> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const hit = (await flowsOn(node)).find(want);
    if (hit) return hit;
    if (Date.now() > end) {
      throw new Error(`no such record on ${node.name}: ${JSON.stringify(await flowsOn(node))}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A counter of the agent's /metrics on `node`. */
async function metric(node: ClusterNode, name: string): Promise<number> {
  const res = await node.probe!.http(`${HEALTH}/metrics`, { timeoutMs: 2000 });
  const m = res.body?.match(new RegExp(`^${name} (\\d+)$`, "m"));
  if (!m) throw new Error(`${name} not in ${node.name}'s /metrics`);
  return Number(m[1]);
}

const ip = (p: Pod, f: 4 | 6 = 4) => p.ips.find((a) => a.includes(":") === (f === 6))!;

/** x/a admits only pod c of its namespace; y/a may send nothing. */
const POLICIES = [
  policy("x", "only-c", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Ingress"],
    ingress: [{ from: [{ podSelector: { matchLabels: { pod: "c" } } }] }],
  }),
  policy("y", "no-egress", { podSelector: { matchLabels: { pod: "a" } }, policyTypes: ["Egress"] }),
];

async function withPolicies(nc: NetpolCluster): Promise<void> {
  let rv = "";
  for (const p of POLICIES) rv = await nc.cluster.apiPut("networkpolicies", p);
  await waitEnforced(nc, rv);
}

Deno.test({
  name: "the flow log on the cluster: denials recorded where enforced, with pods and policies; " +
    "a burst over the rate; the agent restarted; mycni-init flows",
  ignore: !canRunPrivileged,
}, async (t) => {
  await using nc = await startNetpolCluster({ agentArgs: ["--flow-log-rate", String(RATE)] });
  const pod = (key: string) => nc.pods.get(key)!;
  const [xa, xb, xc, ya, za] = ["x/a", "x/b", "x/c", "y/a", "z/a"].map(pod);
  assert(xa.node !== xb.node && ya.node !== za.node, "the denials cross nodes");
  await withPolicies(nc);

  await t.step(
    "an ingress denial is recorded on the destination's node, both families",
    async () => {
      for (const f of [4, 6] as const) {
        assertEquals((await xb.probe!.tcp(ip(xa, f), { port: 80, timeoutMs: 300 })).ok, false);
        const r = await recordOn(xa.node, (r) => r.src === ip(xb, f) && r.dport === 80);
        assertEquals({ ...r, time: "" }, {
          time: "",
          verdict: "deny",
          direction: "ingress",
          src: ip(xb, f),
          dst: ip(xa, f),
          proto: "TCP",
          dport: 80,
          srcPod: "x/b",
          dstPod: "x/a",
          policies: ["x/only-c"],
        });
        assert(Math.abs(Date.parse(r.time) - Date.now()) < 10_000, r.time);
      }
      // Not on the source's node: it enforces no ingress for x/a.
      assertEquals((await flowsOn(xb.node)).filter((r) => r.dst === ip(xa)).length, 0);
      // An allowed flow is never recorded.
      assertEquals((await xc.probe!.tcp(ip(xa), { port: 80, timeoutMs: 1000 })).ok, true);
      assertEquals((await flowsOn(xa.node)).filter((r) => r.src === ip(xc)).length, 0);
    },
  );

  await t.step("an egress denial is recorded on the source's node", async () => {
    assertEquals((await ya.probe!.udp(ip(za), { port: 81, timeoutMs: 300 })).ok, false);
    const r = await recordOn(ya.node, (r) => r.dst === ip(za) && r.proto === "UDP");
    assertEquals([r.direction, r.src, r.dport, r.srcPod, r.dstPod, r.policies], [
      "egress",
      ip(ya),
      81,
      "y/a",
      "z/a",
      ["y/no-egress"],
    ]);
    assertEquals((await flowsOn(za.node)).filter((r) => r.src === ip(ya)).length, 0);
  });

  await t.step(
    "records are JSON lines in the agent's log and what mycni-init flows prints",
    async () => {
      const log = await Deno.readTextFile(`${xa.node.dir}/agent.log`);
      const lines = log.split("\n").filter((l) => l.includes('"msg":"flow"'));
      assert(lines.some((l) => l.includes(`"src":"${ip(xb)}"`) && l.includes("x/only-c")), log);
      const cli = [`${nc.cluster.binDir}/mycni-init`, "flows"];
      const json = await run(inNetns(xa.node.netns, [...cli, "--json"]));
      const records = json.trim().split("\n").map((l) => JSON.parse(l) as FlowRecord);
      assert(records.some((r) => r.srcPod === "x/b" && r.policies?.[0] === "x/only-c"), json);
      const text = await run(inNetns(xa.node.netns, cli));
      assert(text.includes(`x/b ${ip(xb)} -> x/a ${ip(xa)}:80 by x/only-c`), text);
    },
  );

  await t.step("a burst over the rate records at most the rate and counts the rest", async () => {
    await new Promise((r) => setTimeout(r, 1500)); // the node's budget refills
    const node = xa.node;
    const records = await metric(node, "mycni_flow_log_records_total");
    const dropped = await metric(node, "mycni_flow_log_dropped_total");
    const FLOWS = 300;
    const sent = await sendFrom(xb, [
      "udp",
      "--to",
      ip(xa),
      "--port",
      "20000",
      "--count",
      `${FLOWS}`,
    ]);
    await new Promise((r) => setTimeout(r, 500)); // the last batch reaches the agent
    const recorded = await metric(node, "mycni_flow_log_records_total") - records;
    const counted = await metric(node, "mycni_flow_log_dropped_total") - dropped;
    const allowance = RATE + Math.ceil((sent.ms / 1000) * RATE) + 1;
    console.log(`${FLOWS} denied flows in ${sent.ms} ms: ${recorded} recorded, ${counted} counted`);
    assert(recorded <= allowance, `recorded ${recorded}, the rate allows ${allowance}`);
    assert(recorded >= RATE / 2, `recorded only ${recorded}`);
    assertEquals(recorded + counted, FLOWS, "every flow recorded or counted");
  });

  await t.step("the agent restarted: enforcement never pauses, the log resumes", async () => {
    const node = xa.node;
    const seen = { denied: 0, allowed: 0, allowedFailed: 0 };
    let probing = true;
    const probes = (async () => {
      while (probing) {
        const [d, a] = await Promise.all([
          xb.probe!.tcp(ip(xa), { port: 81, timeoutMs: 200 }),
          xc.probe!.tcp(ip(xa), { port: 81, timeoutMs: 200 }),
        ]);
        if (d.ok) seen.denied++;
        if (a.ok) seen.allowed++;
        else seen.allowedFailed++;
      }
    })();
    // Killed (a crash), away for a second, started again.
    await nc.cluster.stopAgent(node);
    await new Promise((r) => setTimeout(r, 1000));
    await nc.cluster.startAgent(node);
    const restarted = Date.now();
    await waitEnforced(nc, nc.cluster.policyWriteVersion(), { nodes: [node], timeoutMs: 20000 });
    await new Promise((r) => setTimeout(r, 500));
    probing = false;
    await probes;
    assertEquals(seen.denied, 0, "a denied flow got through while the agent was away");
    assert(seen.allowed > 5 && seen.allowedFailed === 0, `allowed: ${JSON.stringify(seen)}`);
    assertEquals((await xb.probe!.tcp(ip(xa), { port: 80, timeoutMs: 300 })).ok, false);
    // A new attempt (another source port: another flow) is recorded by the new agent.
    const r = await recordOn(
      node,
      (r) => r.src === ip(xb) && Date.parse(r.time) >= restarted && r.policies !== undefined,
    );
    assertEquals([r.srcPod, r.dstPod, r.policies], ["x/b", "x/a", ["x/only-c"]]);
  });
});

/** The flow sender (tests/harness/flow_sender.ts) in `p`'s namespace. */
async function sendFrom(p: Pod, args: string[]): Promise<{ sent: number; ms: number }> {
  const sender = new URL("../harness/flow_sender.ts", import.meta.url).pathname;
  const out = await run(inNetns(p.netns, [
    Deno.execPath(),
    "run",
    "-A",
    "--unstable-net",
    "--no-check",
    "--no-config",
    "--no-lock",
    sender,
    ...args,
  ]));
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

Deno.test({
  name:
    "a ClusterNetworkPolicy Deny is recorded with its name and rule (the agent's table, a real kernel)",
  ignore: !canRunPrivileged,
}, async () => {
  await using lab = await flowLab();
  // The lab's server is pod x/server on node "lab", its client y/client elsewhere.
  const nsSel = (ns: string) => ({ matchLabels: { "kubernetes.io/metadata.name": ns } });
  const base = {
    pods: new Map([
      ["x/server", podInfo("x/server", { node: "lab", ips: [LAB.server[4], LAB.server[6]] })],
      ["y/client", podInfo("y/client", { node: "far", ips: [LAB.client[4], LAB.client[6]] })],
    ]),
    namespaces: new Map([["x", namespace("x")], ["y", namespace("y")]]),
    policies: new Map(),
  };
  const state = withCluster(base, [
    cnp("guard-x", {
      tier: "Admin",
      priority: 5,
      subject: { namespaces: nsSel("x") },
      ingress: [
        { action: "Accept", from: [{ namespaces: nsSel("z") }] },
        { action: "Deny", from: [{ namespaces: nsSel("y") }] },
      ],
    }),
  ]);
  const plan = compilePolicies(state, { node: "lab" });
  const table = desiredTable({
    clusterCidrs: ["10.77.0.0/16", "fd77::/16"],
    podCIDRs: ["10.77.2.0/24", "fd77:2::/64"],
    policy: policyObjects(plan, { flowLog: true }),
    flowLog: { rate: 100 },
    strict: true,
  });
  await loadTable(lab.router, renderFullTable(table));
  using sub = NflogSubscriber.open(FLOW_LOG_GROUP, { netns: lab.router.path });
  const log = new FlowLog({ rate: 100, attribution: () => attributionOf({ state, plan }) });
  const stop = new AbortController();
  const reading = sub.run((p) => log.add(p), stop.signal);
  try {
    await sendFlows(lab.client, ["tcp", "--to", LAB.server[6], "--port", "443", "--wait", "300"]);
    const end = Date.now() + 3000;
    while (log.recent().length === 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const [r] = log.recent();
    assertEquals({ ...r, time: "" }, {
      time: "",
      verdict: "deny",
      direction: "ingress",
      src: LAB.client[6],
      dst: LAB.server[6],
      proto: "TCP",
      dport: 443,
      srcPod: "y/client",
      dstPod: "x/server",
      policies: ["guard-x[1]"],
    });
  } finally {
    stop.abort();
    await reading;
  }
});
