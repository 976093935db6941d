// Issue 11's acceptance on the simulated cluster with two underlay segments joined by a router:
// the built agent on every node (--backend auto), pods made by the built plugin. Host-gw between
// nodes of one segment, VXLAN across, decided per peer; checked on the kernel's state (routes,
// neighbours, FDB entries read with ip and bridge) and with real traffic (ping + TCP with the
// source address the destination saw). Dual-stack, IPv4-only and IPv6-only clusters.
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert";
import { inNetns, run, runOutput } from "../../lib/process/run.ts";
import { vtepMac } from "../../lib/node/backend.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import {
  type Cluster,
  type ClusterMode,
  type ClusterNode,
  type Host,
  type Pod,
  startCluster,
  waitFor,
} from "../harness/cluster.ts";
import {
  agentRoutes,
  fragmentationCounters,
  pairBackends,
  VXLAN_DEVICE,
  vxlanEntries,
} from "../harness/backends.ts";
import { type Check, describeFailures, passed, planChecks, runChecks } from "../harness/matrix.ts";
import type { IpFamily } from "../harness/topology.ts";
import { spawnChild } from "../harness/child.ts";

/** How each ordered pair of the 4-node cluster must be reached: same segment host-gw. */
async function assertBackends(cluster: Cluster): Promise<void> {
  for (const from of cluster.nodes) {
    for (const to of cluster.nodes) {
      if (from === to) continue;
      const want = cluster.segmentOf(from) === cluster.segmentOf(to) ? "host-gw" : "vxlan";
      assertEquals(
        await pairBackends(from, to),
        to.podCIDRs.map(() => want),
        `${from.name} → ${to.name}`,
      );
    }
  }
}

/**
 * The VXLAN entries `node` must have: per peer on the other segment a permanent neighbour for
 * each of its VTEPs (podCIDR network addresses) with its derived MAC, and one FDB entry sending
 * that MAC to its underlay address; nothing else.
 */
async function assertVxlanEntries(cluster: Cluster, node: ClusterNode): Promise<void> {
  const across = cluster.nodes.filter((n) => cluster.segmentOf(n) !== cluster.segmentOf(node));
  const { neighbours, fdb } = await vxlanEntries(node);
  const want = {
    neighbours: across.flatMap((n) =>
      n.podCIDRs.map((c) => `${c.split("/")[0]} lladdr ${vtepMac(n.ips[0])} PERMANENT`)
    ).sort(),
    fdb: across.map((n) => `${vtepMac(n.ips[0])} dst ${n.ips[0]} self permanent`).sort(),
  };
  assertEquals({ neighbours, fdb }, want, `${node.name}'s ${VXLAN_DEVICE} entries`);
}

function assertAllPassed(checks: readonly Check[]): void {
  const failed = checks.filter((c) => !passed(c));
  assertEquals(
    failed.length,
    0,
    `${failed.length} of ${checks.length} checks failed:\n${describeFailures(checks)}`,
  );
}

/** The whole matrix: pod↔pod (same node, same segment, across), node→pod, pod→node, external. */
async function assertMatrix(cluster: Cluster): Promise<void> {
  const [first, ...rest] = cluster.pods();
  await cluster.waitReachable(first, rest.flatMap((p) => p.ips));
  assertAllPassed(await runChecks(cluster, planChecks(cluster)));
  for (const pod of cluster.pods()) {
    for (const [i, ip] of cluster.external.ips.entries()) {
      assertEquals(await cluster.sourceSeenBy(pod, ip), pod.node.ips[i], `${pod.name} → ${ip}`);
    }
  }
}

async function conflistMtu(node: ClusterNode): Promise<number> {
  return JSON.parse(await Deno.readTextFile(`${node.dir}/net.d/10-mycni.conflist`)).plugins[0].mtu;
}

async function linkMtu(host: Host, dev: string): Promise<number> {
  return JSON.parse(await run(["ip", "-n", host.nsName, "-j", "link", "show", "dev", dev]))[0].mtu;
}

/**
 * Full-size packets with DF set cross the tunnel: ping -M do at exactly the pods' MTU passes
 * and one byte more is refused at the pod; a one-second TCP transfer of at least 32 MiB (DF
 * set, as Linux TCP always does) crosses without any IP fragment or "too big" ICMP on either
 * node.
 */
async function assertFullSizeAcross(from: Pod, to: Pod, mtu: number): Promise<void> {
  const nodes = [from.node, to.node];
  const before = await Promise.all(nodes.map(fragmentationCounters));
  const server = await spawnChild(inNetns(to.netns, ["iperf3", "-s", "-p", "5201"]));
  try {
    await new Promise((r) => setTimeout(r, 300));
    for (const ip of to.ips) {
      const v6 = ip.includes(":");
      const payload = mtu - (v6 ? 48 : 28);
      const ping = (size: number) =>
        runOutput(inNetns(from.netns, [
          "ping",
          ...(v6 ? ["-6"] : []),
          "-M",
          "do",
          "-c",
          "2",
          "-W",
          "2",
          "-s",
          String(size),
          ip,
        ]));
      const full = await ping(payload);
      assertEquals(full.code, 0, `ping -M do -s ${payload} ${ip}: ${full.stdout}${full.stderr}`);
      const over = await ping(payload + 1);
      assert(
        over.code !== 0,
        `ping -M do -s ${payload + 1} ${ip} passed: the pod MTU is not ${mtu}`,
      );
      const out = await run(inNetns(from.netns, [
        "iperf3",
        "-c",
        ip,
        "-p",
        "5201",
        "-t",
        "1",
        "-J",
      ]));
      const got = JSON.parse(out).end.sum_received.bytes as number;
      assert(got >= 32 * 1024 * 1024, `iperf3 to ${ip} moved only ${got} bytes in 1 s`);
    }
  } finally {
    await server.stop("SIGTERM", 1000);
  }
  const after = await Promise.all(nodes.map(fragmentationCounters));
  assertEquals(after, before, "fragmentation or ICMP too-big counters moved on a node");
}

/** Milliseconds until every (from, to ip) pair gets a TCP connection through. */
async function timeToReach(
  cluster: Cluster,
  pairs: readonly [Host, string][],
  limitMs: number,
): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    pairs.map(([from, ip]) =>
      waitFor(`${from.name} to reach ${ip}`, limitMs + 4000, async () => {
        // Short attempts: a SYN sent before the route changed is lost, not waited for.
        return (await cluster.tcp(from, ip, { timeoutMs: 150 })).ok;
      })
    ),
  );
  return performance.now() - t0;
}

/** A step whose failure carries the agents' log tails. */
function stepper(t: Deno.TestContext, cluster: Cluster) {
  return (name: string, fn: () => Promise<void>) =>
    t.step(name, async () => {
      try {
        await fn();
      } catch (err) {
        throw new Error(`${(err as Error).message}${await cluster.logs(15)}`, { cause: err });
      }
    });
}

const SHAPE = { nodes: 4, podsPerNode: 2, segments: 2 } as const;

Deno.test({
  name:
    "mycni-init --backend auto: a dual-stack cluster on two segments, host-gw within, VXLAN across",
  ignore: !canRunPrivileged,
}, async (t) => {
  await using cluster = await startCluster({ ...SHAPE, families: [4, 6], mode: "static" });
  const [n1, n2, n3, n4] = cluster.nodes;
  const step = stepper(t, cluster);

  await step(
    "each pair: host-gw on its segment, VXLAN across, with every node's VTEPs",
    async () => {
      await assertBackends(cluster);
      for (const n of cluster.nodes) await assertVxlanEntries(cluster, n);
      const routes = await agentRoutes(n1);
      const toN3 = routes.filter((r) => n3.podCIDRs.includes(r.dst));
      assertEquals(
        toN3.map((r) => [r.gateway, r.dev, r.flags.includes("onlink")]),
        [["10.244.3.0", VXLAN_DEVICE, true], ["fd00:10:244:3::", VXLAN_DEVICE, true]],
      );
      const toN2 = routes.filter((r) => n2.podCIDRs.includes(r.dst));
      assertEquals(toN2.map((r) => [r.gateway, r.dev]), [[n2.ips[0], "eth0"], [n2.ips[1], "eth0"]]);
      const dev = JSON.parse(
        await run(["ip", "-n", n1.nsName, "-d", "-j", "link", "show", "dev", VXLAN_DEVICE]),
      )[0];
      const info = dev.linkinfo.info_data;
      assertEquals(
        [info.id, info.port, info.local, info.learning, dev.address, dev.mtu],
        [1, 8472, n1.ips[0], false, vtepMac(n1.ips[0]), 1450],
      );
    },
  );

  await step("every pod reaches every pod with its real source, pods reach out NATed", async () => {
    await assertMatrix(cluster);
  });

  await step(
    "full-size packets with DF cross VXLAN unfragmented, and same-segment too",
    async () => {
      for (const n of cluster.nodes) assertEquals(await conflistMtu(n), 1450);
      assertEquals(await linkMtu(n1.pods[0], "eth0"), 1450);
      await assertFullSizeAcross(n1.pods[0], n3.pods[0], 1450);
      await assertFullSizeAcross(n1.pods[0], n2.pods[0], 1450);
    },
  );

  await step("a restarted agent, and --once beside it, leave one copy of everything", async () => {
    const state = async (n: ClusterNode) => ({
      ...await cluster.nodeState(n),
      vxlan: await vxlanEntries(n),
      // The same device, not one made anew (that would drop traffic through it for a moment).
      device: JSON.parse(
        await run(["ip", "-n", n.nsName, "-j", "link", "show", "dev", VXLAN_DEVICE]),
      ).map((l: { ifindex: number; address: string }) => [l.ifindex, l.address]),
    });
    const before = await Promise.all([n1, n3].map(state));
    await Promise.all([n1, n3].map((n) => cluster.restartAgent(n, "SIGKILL")));
    await waitFor(
      "the restarted agents to report healthy",
      15000,
      async () => (await cluster.agentHealthy(n1)) && (await cluster.agentHealthy(n3)),
    );
    const once = await cluster.runAgentOnce(n3);
    assertEquals(once.code, 0, `--once exited ${once.code}: ${once.stderr}`);
    const after = await Promise.all([n1, n3].map(state));
    assertEquals(after, before, "a restarted agent must converge to the same state");
    for (const s of after) {
      for (const dump of [...s.routes, s.vxlan.neighbours.join("\n"), s.vxlan.fdb.join("\n")]) {
        const lines = dump.split("\n").filter((l) => l.trim() !== "");
        assertEquals(new Set(lines).size, lines.length, `duplicates in:\n${dump}`);
      }
    }
  });

  let joined: ClusterNode[] = [];
  await step("a node joins on each segment and is reached the right way both ways", async () => {
    const n5 = await cluster.addNode({ pods: 1, segment: 0 });
    const n6 = await cluster.addNode({ pods: 1, segment: 1 });
    joined = [n5, n6];
    await cluster.waitForRoutes(10000);
    await assertBackends(cluster);
    for (const n of cluster.nodes) await assertVxlanEntries(cluster, n);
    for (const [a, b] of [[n1, n5], [n1, n6], [n3, n5], [n3, n6], [n5, n6]]) {
      await cluster.waitReachable(a.pods[0], b.pods[0].ips);
      await cluster.waitReachable(b.pods[0], a.pods[0].ips);
      for (const ip of b.pods[0].ips) {
        const seen = await cluster.sourceSeenBy(a.pods[0], ip);
        assert(a.pods[0].ips.includes(seen!), `${a.pods[0].name} → ${ip} seen as ${seen}`);
      }
    }
  });

  await step("nodes leaving either segment leave no route, neighbour or FDB entry", async () => {
    for (const n of joined) await cluster.removeNode(n);
    await cluster.waitForRoutes(10000);
    for (const n of cluster.nodes) {
      await waitFor(`${n.name}'s entries for departed nodes to go`, 5000, async () => {
        const { neighbours, fdb } = await vxlanEntries(n);
        const text = [...neighbours, ...fdb, ...(await agentRoutes(n)).map((r) => r.dst)]
          .join("\n");
        return joined.every((g) =>
          !g.podCIDRs.some((c) => text.includes(c.split("/")[0])) &&
          !text.includes(vtepMac(g.ips[0]))
        );
      });
      await assertVxlanEntries(cluster, n);
    }
  });

  await step("a node that moves to the other segment is reachable again within 1 s", async () => {
    const oldIps = n2.ips;
    const movedAt = await cluster.moveNode(n2, 1);
    const waited = performance.now() - movedAt;
    const pod = n2.pods[0];
    const ms = waited + await timeToReach(cluster, [
      ...pod.ips.map((ip) => [n1.pods[0], ip] as [Host, string]),
      ...pod.ips.map((ip) => [n3.pods[0], ip] as [Host, string]),
      ...n1.pods[0].ips.map((ip) => [pod, ip] as [Host, string]),
      ...n4.pods[0].ips.map((ip) => [pod, ip] as [Host, string]),
    ], 1000);
    console.log(
      `    n2 moved to segment B: its pod reachable both ways ${Math.round(ms)} ms later`,
    );
    assert(ms < 1000, `n2's pod took ${Math.round(ms)} ms to be reachable again`);
    await assertBackends(cluster);
    for (const n of cluster.nodes) await assertVxlanEntries(cluster, n);
    for (const n of [n1, n3, n4]) {
      const text = JSON.stringify([await vxlanEntries(n), await agentRoutes(n)]);
      for (const ip of oldIps) assert(!text.includes(`"${ip}"`) && !text.includes(`dst ${ip} `));
      assert(!text.includes(vtepMac(oldIps[0])), `${n.name} still has n2's old VTEP MAC`);
    }
    const checks = await runChecks(
      cluster,
      planChecks(cluster).filter((c) =>
        c.kind.startsWith("pod↔pod") && (c.from.name.startsWith("n2") || c.to.name.startsWith("n2"))
      ),
    );
    assertAllPassed(checks);
  });
});

/** The single-stack clusters: the same matrix, and the backends, VTEPs and MTU they imply. */
const SINGLE_STACK: readonly { family: IpFamily; mode: ClusterMode; mtu: number }[] = [
  // IPv4-only against the stand-in API server (segment B's agents reach it through the router).
  { family: 4, mode: "api", mtu: 1450 },
  // IPv6-only: an IPv6 underlay, so 70 bytes of VXLAN overhead.
  { family: 6, mode: "static", mtu: 1430 },
];

for (const { family, mode, mtu } of SINGLE_STACK) {
  Deno.test({
    name: `mycni-init --backend auto: an IPv${family}-only cluster on two segments (${mode} mode)`,
    ignore: !canRunPrivileged,
  }, async (t) => {
    await using cluster = await startCluster({ ...SHAPE, families: [family], mode });
    const step = stepper(t, cluster);
    await step("host-gw within a segment, VXLAN across, and the VTEP entries", async () => {
      await assertBackends(cluster);
      for (const n of cluster.nodes) await assertVxlanEntries(cluster, n);
    });
    await step("the whole matrix: real sources inside, NAT to the outside", async () => {
      await assertMatrix(cluster);
    });
    await step(`pods get MTU ${mtu}, and full-size packets cross VXLAN unfragmented`, async () => {
      for (const n of cluster.nodes) assertEquals(await conflistMtu(n), mtu);
      await assertFullSizeAcross(cluster.nodes[0].pods[0], cluster.nodes[2].pods[0], mtu);
    });
  });
}
