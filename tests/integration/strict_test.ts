// Strict mode on the simulated cluster (DESIGN.md "contract — strictness"): connections held open
// to x/a (TCP and UDP, IPv4 and IPv6, from pods on other nodes and on x/a's own node) while a
// policy isolates x/a; every one the policy now denies goes silent, both ways, within 1 s of
// every agent enforcing the write (/healthz policy.resourceVersion), and the ones it still
// allows keep talking without a pause. With --policy-strict=false the held connections go on
// (the policy only stops new ones), and the table has no strict rule.
import { inNetns, run } from "../../lib/process/run.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import { startCluster } from "../harness/cluster.ts";
import { type HeldSpec, holdConnections } from "../harness/held.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import { policy, startNetpolCluster, waitEnforced } from "../harness/netpol.ts";

const PORT = 7001;
/** A cut must hold from 1 s after enforcement: watched this long after it. */
const WATCH_MS = 3000;

/** x/a admits only pod c of its namespace. */
const ONLY_C = policy("x", "only-c", {
  podSelector: { matchLabels: { pod: "a" } },
  policyTypes: ["Ingress"],
  ingress: [{ from: [{ podSelector: { matchLabels: { pod: "c" } } }] }],
});

const sleepUntil = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

Deno.test({
  name: "strict mode cuts the held connections a policy now denies within 1 s of enforcing it, " +
    "across nodes and on one node, TCP and UDP, IPv4 and IPv6; allowed ones never pause",
  ignore: !canRunPrivileged,
}, async () => {
  await using nc = await startNetpolCluster();
  const pod = (key: string) => nc.pods.get(key)!;
  const xa = pod("x/a");
  const at = (f: 4 | 6) => xa.ips.find((ip) => ip.includes(":") === (f === 6))!;
  // Nodes: x/a, y/c and z/b on n1; x/b, y/a on n2; x/c on n3.
  assert(pod("y/c").node === xa.node && pod("z/b").node === xa.node, "same-node peers");
  assert(pod("x/b").node !== xa.node && pod("x/c").node !== xa.node, "other-node peers");
  const denied: HeldSpec[] = [
    { name: "other node, TCP, IPv4", from: pod("x/b"), to: at(4), proto: "tcp" },
    { name: "other node, TCP, IPv6", from: pod("x/b"), to: at(6), proto: "tcp" },
    { name: "same node, TCP, IPv4", from: pod("y/c"), to: at(4), proto: "tcp" },
    { name: "same node, TCP, IPv6", from: pod("z/b"), to: at(6), proto: "tcp" },
    { name: "other node, UDP, IPv4", from: pod("y/a"), to: at(4), proto: "udp" },
    { name: "same node, UDP, IPv6", from: pod("y/c"), to: at(6), proto: "udp" },
  ];
  const allowed: HeldSpec[] = [
    { name: "allowed, TCP, IPv4", from: pod("x/c"), to: at(4), proto: "tcp" },
    { name: "allowed, TCP, IPv6", from: pod("x/c"), to: at(6), proto: "tcp" },
    { name: "allowed, UDP, IPv4", from: pod("x/c"), to: at(4), proto: "udp" },
  ];
  await using held = await holdConnections(xa, [...denied, ...allowed], PORT);
  await held.talking();
  const rv = await nc.cluster.apiPut("networkpolicies", ONLY_C);
  await waitEnforced(nc, rv);
  const enforced = Date.now();
  await sleepUntil(enforced + 1000 + 200); // reports lag by up to 50 ms
  const cutBy = new Map(denied.map((c) => [c.name, held.seen(c.name)]));
  const before = new Map(allowed.map((c) => [c.name, held.seen(c.name)]));
  await sleepUntil(enforced + WATCH_MS);
  const report: string[] = [];
  for (const c of denied) {
    const s = held.seen(c.name);
    const last = Math.max(s.client.last, s.server.last);
    report.push(`${c.name}: last heard ${last - enforced} ms after enforcement`);
    assert(
      s.client.last <= enforced + 1000 && s.server.last <= enforced + 1000,
      `${c.name} still talks ${last - enforced} ms after the policy was enforced: ` +
        JSON.stringify(s) + (await nc.cluster.logs(10)),
    );
    assertEquals(s.client.count, cutBy.get(c.name)!.client.count, `${c.name}: client`);
    assertEquals(s.server.count, cutBy.get(c.name)!.server.count, `${c.name}: server`);
  }
  for (const c of allowed) {
    const s = held.seen(c.name), b = before.get(c.name)!;
    report.push(`${c.name}: longest pause ${Math.max(s.client.maxGap, s.server.maxGap)} ms`);
    assert(s.client.count > b.client.count + 20 && s.server.count > b.server.count + 20, c.name);
    assert(
      s.client.maxGap < 500 && s.server.maxGap < 500,
      `${c.name} paused: ${JSON.stringify(s)}`,
    );
  }
  console.log(report.join("\n"));
  // The agent on x/a's node did the cutting and says so.
  const node = nc.cluster.nodes.find((n) => n === xa.node)!;
  const metrics = await node.probe!.http("http://127.0.0.1:9749/metrics");
  const cut = Number(metrics.body?.match(/^mycni_policy_strict_cut_total (\d+)$/m)?.[1]);
  assert(cut >= denied.length, `mycni_policy_strict_cut_total ${cut}`);
  // Its table now holds elements the table's sync never wrote: the cut UDP connections' answers
  // (the agent's) and the logged flows (the kernel's). The periodic read-back (every 10 s) must
  // take them as they are: no repair, no reload.
  const sets = await run(
    inNetns(node.netns, ["nft", "list", "set", "inet", "mycni", "strict_cut6"]),
  );
  assert(sets.includes("udp"), `the cut set holds nothing: ${sets}`);
  await new Promise((r) => setTimeout(r, 11_000));
  const log = await Deno.readTextFile(`${node.dir}/agent.log`);
  assert(!log.includes("differs from the one applied"), log.slice(-3000));
});

Deno.test({
  name: "--policy-strict=false keeps held connections a policy now denies, and new ones are denied",
  ignore: !canRunPrivileged,
}, async () => {
  await using cluster = await startCluster({
    nodes: 2,
    podsPerNode: 0,
    mode: "api",
    agentArgs: ["--policy-strict=false"],
  });
  await cluster.apiPut("namespaces", { metadata: { name: "x", labels: { ns: "x" } } });
  const [n1, n2] = cluster.nodes;
  const xa = await cluster.addPod(n1, { namespace: "x", name: "a", labels: { pod: "a" } });
  const xb = await cluster.addPod(n2, { namespace: "x", name: "b", labels: { pod: "b" } });
  const xc = await cluster.addPod(n1, { namespace: "x", name: "c", labels: { pod: "c" } });
  const conns: HeldSpec[] = [
    { name: "other node, TCP", from: xb, to: xa.ips[0], proto: "tcp" },
    { name: "same node, UDP", from: xc, to: xa.ips[0], proto: "udp" },
  ];
  await using held = await holdConnections(xa, conns, PORT);
  await held.talking();
  const rv = await cluster.apiPut(
    "networkpolicies",
    policy("x", "deny", { podSelector: { matchLabels: { pod: "a" } }, policyTypes: ["Ingress"] }),
  );
  const nc = { cluster, pods: new Map(), nodeFor: () => n1, [Symbol.asyncDispose]: async () => {} };
  await waitEnforced(nc, rv);
  const enforced = Date.now();
  const before = new Map(conns.map((c) => [c.name, held.seen(c.name)]));
  // The policy is in force for new connections.
  assertEquals((await cluster.tcp(xb, xa.ips[0], { timeoutMs: 1000 })).ok, false);
  await sleepUntil(enforced + WATCH_MS);
  for (const c of conns) {
    const s = held.seen(c.name), b = before.get(c.name)!;
    assert(
      s.client.count > b.client.count + 20 && s.server.count > b.server.count + 20,
      `${c.name} was cut without strict mode: ${JSON.stringify(s)}`,
    );
  }
  const table = await run(inNetns(n1.netns, ["nft", "list", "table", "inet", "mycni"]));
  assert(!table.includes("tcp flags") && !table.includes("strict_cut"), table);
});
