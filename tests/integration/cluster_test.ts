// Issue 3's acceptance on the simulated cluster: the built agent (bin/mycni-init) on every node
// and pods made by the built plugin, once with a nodes file and once against the fake API
// server. One 3-node dual-stack cluster per mode; each acceptance point is a step.
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert";
import { inNetns, run, runOutput } from "../../lib/process/run.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import {
  type ClusterMode,
  type ClusterNode,
  type Pod,
  startCluster,
  waitFor,
} from "../harness/cluster.ts";
import { type Check, describeFailures, passed, planChecks, runChecks } from "../harness/matrix.ts";

const MODES: readonly ClusterMode[] = ["static", "api"];

for (const mode of MODES) {
  Deno.test({
    name: `mycni-init (${mode} mode) keeps a 3-node dual-stack cluster connected`,
    ignore: !canRunPrivileged,
  }, async (t) => {
    await using cluster = await startCluster({ nodes: 3, podsPerNode: 2, dualStack: true, mode });
    const [n1, n2, n3] = cluster.nodes;
    const step = (name: string, fn: () => Promise<void>) =>
      t.step(name, async () => {
        try {
          await fn();
        } catch (err) {
          throw new Error(`${(err as Error).message}${await cluster.logs(15)}`, { cause: err });
        }
      });

    await step("every pod reaches every pod on every node with its real source IP", async () => {
      await cluster.waitReachable(
        cluster.pods()[0],
        cluster.pods().slice(1).flatMap((p) => p.ips),
      );
      const checks = await runChecks(
        cluster,
        planChecks(cluster).filter((c) => c.kind.startsWith("pod↔pod") || c.kind === "node→pod"),
      );
      assertAllPassed(checks);
    });

    await step("pods reach the external host with their node's IP as source", async () => {
      const checks = await runChecks(
        cluster,
        planChecks(cluster).filter((c) => c.kind === "pod→external" || c.kind === "pod→node"),
      );
      assertAllPassed(checks);
      for (const pod of cluster.pods()) {
        for (const [i, ip] of cluster.external.ips.entries()) {
          assertEquals(await cluster.sourceSeenBy(pod, ip), pod.node.ips[i]);
        }
      }
    });

    await step("running the agent with --once beside the daemon changes nothing", async () => {
      const before = await cluster.nodeState(n1);
      const once = await cluster.runAgentOnce(n1);
      assertEquals(once.code, 0, `--once exited ${once.code}: ${once.stderr}`);
      const after = await cluster.nodeState(n1);
      for (const dump of after.iptables) assertNoDuplicates(dump, "iptables rule");
      for (const dump of after.routes) assertNoDuplicates(dump, "route");
      assertEquals(after.routes, before.routes);
      assertEquals(after.iptables, before.iptables);
      assertEquals(after.nftables, before.nftables);
      assert(after.nftables.includes('"masquerade"'), "the table masquerades");
    });

    await step("killing and restarting agents keeps the datapath working throughout", async () => {
      const before = await Promise.all([n1, n2].map((n) => cluster.nodeState(n)));
      const [from, to] = [n1.pods[0], n2.pods[0]];
      // 0.1 s apart for ~4 s, both families, across the nodes whose agents die.
      const loops = to.ips.map((ip) => pingLoop(from, ip, 40));
      await sleep(500);
      await Promise.all([n1, n2].map((n) => cluster.stopAgent(n, "SIGKILL")));
      await sleep(500);
      await Promise.all([n1, n2].map((n) => cluster.startAgent(n)));
      await waitFor(
        "the restarted agents to report healthy",
        15000,
        async () => (await cluster.agentHealthy(n1)) && (await cluster.agentHealthy(n2)),
      );
      for (const loop of await Promise.all(loops)) {
        assertEquals(loop.received, loop.sent, `pings lost during the restart: ${loop.summary}`);
      }
      const after = await Promise.all([n1, n2].map((n) => cluster.nodeState(n)));
      assertEquals(after, before, "a restarted agent must converge to the same state");
    });

    let n4: ClusterNode | undefined;
    await step("a 4th node becomes reachable both ways without restarting agents", async () => {
      const agents = cluster.nodes.map((n) => n.agent!);
      if (mode === "api") {
        // The watch the agents hold is cut, and their resourceVersion expires (410 Gone):
        // the new node must still arrive.
        await cluster.apiRequest("POST", "/_test/drop");
        await cluster.apiRequest("POST", "/_test/expire");
      }
      n4 = await cluster.addNode({ pods: 1 });
      await cluster.waitForRoutes(10000);
      const t0 = performance.now();
      await cluster.waitReachable(cluster.nodes[0].pods[0], n4.pods[0].ips);
      await cluster.waitReachable(n4.pods[0], cluster.nodes[0].pods[0].ips);
      console.log(
        `    new node's pod reachable ${Math.round(performance.now() - t0)} ms after its routes`,
      );
      for (const [i, n] of [n1, n2, n3].entries()) {
        assert(n.agent === agents[i] && !n.agent.exited(), `${n.name}'s agent was restarted`);
      }
      const checks = await runChecks(
        cluster,
        planChecks(cluster).filter((c) =>
          c.kind !== "pod→node" &&
          (isOn(c.from, n4!) !== isOn(c.to, n4!)) && c.kind !== "pod→external"
        ),
      );
      assert(checks.length > 0);
      assertAllPassed(checks);
    });

    await step("a deleted node's routes disappear from every other node", async () => {
      const gone = n4;
      assert(gone, "the 4th node was not added");
      if (mode === "api") await cluster.apiRequest("POST", "/_test/drop");
      await cluster.removeNode(gone);
      await cluster.waitForRoutes(10000);
      for (const n of cluster.nodes) {
        const routes = await cluster.podRoutes(n);
        for (const cidr of gone.podCIDRs) {
          assert(!routes.includes(cidr), `${n.name} still routes ${cidr}`);
        }
      }
    });
  });
}

function isOn(host: { name: string }, node: ClusterNode): boolean {
  return host.name === node.name || node.pods.some((p: Pod) => p.name === host.name);
}

function assertAllPassed(checks: readonly Check[]): void {
  const failed = checks.filter((c) => !passed(c));
  assertEquals(
    failed.length,
    0,
    `${failed.length} of ${checks.length} checks failed:\n${describeFailures(checks)}`,
  );
}

/** No line twice within one table of a dump (chains and COMMIT lines repeat per table). */
function assertNoDuplicates(text: string, what: string): void {
  let seen = new Set<string>();
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) seen = new Set();
    if (line.trim() === "" || /^(\*|:|COMMIT)/.test(line)) continue;
    assert(!seen.has(line), `duplicate ${what}: ${line}`);
    seen.add(line);
  }
}

async function pingLoop(from: Pod, to: string, count: number) {
  const out = await runOutput([
    "nsenter",
    `--net=${from.netns}`,
    "--",
    "ping",
    ...(to.includes(":") ? ["-6"] : []),
    "-i",
    "0.1",
    "-W",
    "1",
    "-c",
    String(count),
    "-q",
    to,
  ]);
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out.stdout);
  return {
    sent: Number(m?.[1] ?? count),
    received: Number(m?.[2] ?? 0),
    summary: `${from.name} → ${to}: ${out.stdout.trim().split("\n").slice(-2).join("; ")}`,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

Deno.test({
  name: "--no-masquerade-cidr: a destination in it sees the pod's own address, others the node's",
  ignore: !canRunPrivileged,
}, async () => {
  await using cluster = await startCluster({
    nodes: 2,
    podsPerNode: 1,
    dualStack: true,
    mode: "static",
    agentArgs: [
      "--no-masquerade-cidr",
      "203.0.113.1/32",
      "--no-masquerade-cidr",
      "2001:db8:203::1/128",
    ],
  });
  const ext = cluster.external;
  // A peered network: the external host knows the way back to the pods, and has one more address
  // (.2) that is not in the list.
  for (const node of cluster.nodes) {
    for (const [i, cidr] of node.podCIDRs.entries()) {
      await run(inNetns(ext.netns, ["ip", "route", "add", cidr, "via", node.ips[i]]));
    }
  }
  await run(inNetns(ext.netns, ["ip", "addr", "add", "203.0.113.2/32", "dev", "lo"]));
  await run(inNetns(ext.netns, ["ip", "addr", "add", "2001:db8:203::2/128", "dev", "lo"]));
  for (const pod of cluster.pods()) {
    assertEquals(await cluster.sourceSeenBy(pod, "203.0.113.1"), pod.ips[0]);
    assertEquals(await cluster.sourceSeenBy(pod, "2001:db8:203::1"), pod.ips[1]);
    assertEquals(await cluster.sourceSeenBy(pod, "203.0.113.2"), pod.node.ips[0]);
    assertEquals(await cluster.sourceSeenBy(pod, "2001:db8:203::2"), pod.node.ips[1]);
  }
});
