// Issue 18 on the simulated cluster (API mode, the kubelet's order: the Pod object before ADD,
// its addresses after, late): policy from a pod's first instant. The plugin asks the node's agent
// before ADD returns; the agent binds the addresses, closes them, and answers once the kernel has
// it. Every probe here starts right after ADD returns, with the pod's servers already listening
// (probeFirst), so a refused probe is the policy's drop, not a server not up yet.
import type { Cluster, ClusterNode, Pod } from "../harness/cluster.ts";
import { startCluster, waitFor } from "../harness/cluster.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import { type NetpolCluster, waitEnforced } from "../harness/netpol.ts";
import { run } from "../../lib/process/run.ts";

const ignore = !canRunPrivileged;
const SERVED = { tcp: [80], udp: [81] };

/** The cluster as netpol.ts's helpers take it (waitEnforced). */
function asNetpol(cluster: Cluster): NetpolCluster {
  return {
    cluster,
    pods: new Map(),
    nodeFor: () => cluster.nodes[0],
    [Symbol.asyncDispose]: () => cluster[Symbol.asyncDispose](),
  };
}

async function twoNodes(): Promise<{ cluster: Cluster; nc: NetpolCluster }> {
  const cluster = await startCluster({
    nodes: 2,
    podsPerNode: 0,
    families: [4],
    mode: "api",
    probePorts: SERVED,
  });
  return { cluster, nc: asNetpol(cluster) };
}

async function namespace(cluster: Cluster, name: string, labels: Record<string, string> = {}) {
  await cluster.apiPut("namespaces", { metadata: { name, labels: { ns: name, ...labels } } });
}

/** A NetworkPolicy in `ns` from its spec. */
function netpol(cluster: Cluster, ns: string, name: string, spec: Record<string, unknown>) {
  return cluster.apiPut("networkpolicies", { metadata: { namespace: ns, name }, spec });
}

/**
 * Probes TCP 80 of `to` from each of `from`, `ways` attempts at a time per source, for `ms`:
 * how many attempts there were and how many connected (with when, after the start).
 */
async function probeFor(
  from: readonly Pod[],
  to: string,
  ms: number,
  opts: { ways?: number; timeoutMs?: number } = {},
): Promise<{ attempts: number; connected: number[] }> {
  const started = performance.now();
  const connected: number[] = [];
  let attempts = 0;
  const loop = async (src: Pod) => {
    while (performance.now() - started < ms) {
      attempts++;
      const r = await src.probe!.tcp(to, { port: 80, timeoutMs: opts.timeoutMs ?? 250 });
      if (r.ok) connected.push(Math.round(performance.now() - started));
    }
  };
  const ways = opts.ways ?? 3;
  await Promise.all(from.flatMap((src) => Array.from({ length: ways }, () => loop(src))));
  return { attempts, connected };
}

/** probeFor() until `done()` says so (checked between attempts). */
async function probeUntil(
  from: readonly Pod[],
  to: string,
  done: () => boolean,
): Promise<{ attempts: number; connected: number[] }> {
  const started = performance.now();
  const connected: number[] = [];
  let attempts = 0;
  await Promise.all(from.flatMap((src) =>
    [0, 1].map(async () => {
      while (!done()) {
        attempts++;
        if ((await src.probe!.tcp(to, { port: 80, timeoutMs: 250 })).ok) {
          connected.push(Math.round(performance.now() - started));
        }
      }
    })
  ));
  return { attempts, connected };
}

/** The first moment (ms after the start) a TCP connection from `from` to `to` goes through. */
async function firstConnected(from: Pod, to: string, ms: number): Promise<number | undefined> {
  const started = performance.now();
  while (performance.now() - started < ms) {
    if ((await from.probe!.tcp(to, { port: 80, timeoutMs: 200 })).ok) {
      return Math.round(performance.now() - started);
    }
  }
  return undefined;
}

/**
 * A busy cluster's world in the API, in one request: `pods` pods of `namespaces` namespaces on a
 * node of their own (not ours: peers only), and `policies` policies in those namespaces. Every
 * reconcile of our agents compiles it all (tens of ms), so an admission that answered before the
 * kernel had the pod would leave a window a probe right after ADD falls into.
 */
async function busyWorld(
  cluster: Cluster,
  size: { pods: number; namespaces: number; policies: number },
): Promise<void> {
  const items: { resource: string; object: unknown }[] = [];
  for (let k = 0; k < size.namespaces; k++) {
    items.push({
      resource: "namespaces",
      object: { metadata: { name: `ns-${k}`, labels: { team: `t${k % 25}` } } },
    });
  }
  for (let j = 0; j < size.pods; j++) {
    const ip = `10.99.${j >> 8}.${j & 255}`;
    items.push({
      resource: "pods",
      object: {
        metadata: {
          namespace: `ns-${j % size.namespaces}`,
          name: `p${j}`,
          labels: { app: `a${j % 20}`, role: j % 7 ? "client" : "server" },
        },
        spec: { nodeName: "elsewhere", containers: [{ name: "c" }] },
        status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
      },
    });
  }
  for (let m = 0; m < size.policies; m++) {
    items.push({
      resource: "networkpolicies",
      object: {
        metadata: { namespace: `ns-${m % size.namespaces}`, name: `pol-${m}` },
        spec: {
          podSelector: {},
          ingress: [{
            from: [{
              namespaceSelector: { matchLabels: { team: `t${m % 25}` } },
              podSelector: { matchLabels: { app: `a${m % 20}` } },
            }],
          }],
        },
      },
    });
  }
  await cluster.apiRequest("POST", "/_test/bulk", { items });
}

/** The plugin's log lines of `verb` on `node`. */
async function pluginLines(node: ClusterNode, verb: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(`${node.dir}/mycni.log`).catch(() => "");
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l))
    .filter((l) => l.verb === verb);
}

/** The agent's last few "nftables table synced" times, as its log says them. */
async function reconcileMs(node: ClusterNode): Promise<string> {
  const lines = (await agentLog(node)).split("\n").filter((l) => l.includes("table synced"));
  return lines.slice(-3).map((l) => {
    const j = JSON.parse(l);
    return `${j.ms} ms (${JSON.stringify(j.stepsMs)})`;
  }).join(", ");
}

async function agentLog(node: ClusterNode): Promise<string> {
  return await Deno.readTextFile(`${node.dir}/agent.log`).catch(() => "");
}

Deno.test({
  name:
    "a new pod is closed from the first probe after ADD, before and after the API has its address; allowed flows work within 1 s; a reused address inherits nothing",
  ignore,
}, async (t) => {
  const { cluster, nc } = await twoNodes();
  await using _ = cluster;
  const [n1, n2] = cluster.nodes;
  await namespace(cluster, "clients");
  await namespace(cluster, "closed");
  await namespace(cluster, "noout");
  await namespace(cluster, "served");
  await netpol(cluster, "closed", "deny-in", { podSelector: {}, policyTypes: ["Ingress"] });
  await netpol(cluster, "noout", "deny-out", { podSelector: {}, policyTypes: ["Egress"] });
  await netpol(cluster, "served", "from-clients", {
    podSelector: {},
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "clients" } } }] }],
  });
  // Pods in "reuse" and "srv" (below) also select, and are selected by, the busy world's
  // policies, so the busy world's sets change with them.
  await busyWorld(cluster, { pods: 4000, namespaces: 200, policies: 300 });
  const near = await cluster.addPod(n1, { namespace: "clients", name: "near" });
  const far = await cluster.addPod(n2, { namespace: "clients", name: "far" });
  await waitEnforced(nc, cluster.policyWriteVersion(), { timeoutMs: 60_000 });
  const clients = [near, far];
  console.log(`  a reconcile here: ${await reconcileMs(n1)}`);

  await t.step(
    "deny-all ingress: closed from ADD on, before and after the API has the address",
    async () => {
      const pod = await cluster.addPod(n1, {
        namespace: "closed",
        name: "new-in",
        probeFirst: true,
        podIPsAfterMs: 3000,
      });
      const seen = await probeFor(clients, pod.ips[0], 4500);
      await pod.podIPsPublished;
      assert(seen.attempts >= 30, `only ${seen.attempts} attempts`);
      assertEquals(
        seen.connected,
        [],
        `connections into a deny-all-ingress pod (${seen.attempts} tries)`,
      );
      // Not vacuous: the pod answers where the policy lets it.
      await netpol(cluster, "closed", "from-clients", {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "clients" } } }] }],
      });
      await waitEnforced(nc);
      for (const c of clients) assert((await c.probe!.tcp(pod.ips[0], { port: 80 })).ok, c.name);
    },
  );

  await t.step(
    "deny-all egress: closed from ADD on, before and after the API has the address",
    async () => {
      const pod = await cluster.addPod(n1, {
        namespace: "noout",
        name: "new-out",
        probeFirst: true,
        podIPsAfterMs: 3000,
      });
      const seen = await probeFor([pod], near.ips[0], 4500, { ways: 3 });
      const seenFar = await probeFor([pod], far.ips[0], 1000, { ways: 3 });
      assert(seen.attempts >= 30, `only ${seen.attempts} attempts`);
      assertEquals(
        [...seen.connected, ...seenFar.connected],
        [],
        "connections out of a deny-all-egress pod",
      );
      await cluster.apiDelete("networkpolicies", "noout/deny-out");
      await waitEnforced(nc);
      for (const c of clients) assert((await pod.probe!.tcp(c.ips[0], { port: 80 })).ok, c.name);
    },
  );

  await t.step(
    "an allowed flow works within 1 s of ADD, before the API has the address",
    async () => {
      const started = performance.now();
      const pod = await cluster.addPod(n1, {
        namespace: "served",
        name: "new-ok",
        probeFirst: true,
        podIPsAfterMs: 3000,
      });
      const added = performance.now() - started;
      const [a, b] = await Promise.all(clients.map((c) => firstConnected(c, pod.ips[0], 1000)));
      assert(a !== undefined && b !== undefined, `not reached within 1 s of ADD: ${a}, ${b}`);
      // And from a pod the policy does not allow: still closed.
      const stranger = await cluster.addPod(n2, { namespace: "closed", name: "stranger" });
      assertEquals((await stranger.probe!.tcp(pod.ips[0], { port: 80, timeoutMs: 500 })).ok, false);
      console.log(`  ADD took ${added.toFixed(0)} ms; first connections ${a} ms, ${b} ms after it`);
    },
  );

  await t.step(
    "address reuse: the next owner of an address inherits nothing, not even a UDP flow",
    async () => {
      // x-srv admits only role=client of namespace reuse; old is one, its successor is not.
      await namespace(cluster, "reuse");
      await namespace(cluster, "srv");
      await netpol(cluster, "srv", "only-clients", {
        podSelector: {},
        ingress: [{
          from: [{
            namespaceSelector: { matchLabels: { ns: "reuse" } },
            podSelector: { matchLabels: { role: "client" } },
          }],
        }],
      });
      // The successor's namespace admits nothing: a UDP flow into it must meet that.
      await netpol(cluster, "reuse", "deny-in", {
        podSelector: { matchLabels: { role: "successor" } },
        policyTypes: ["Ingress"],
      });
      const server = await cluster.addPod(n1, { namespace: "srv", name: "server" });
      const old = await cluster.addPod(n1, {
        namespace: "reuse",
        name: "old",
        labels: { role: "client" },
      });
      await waitEnforced(nc);
      assert((await old.probe!.tcp(server.ips[0], { port: 80 })).ok, "old cannot reach the server");
      // A UDP flow (one source port) from far to old: a conntrack entry on n1.
      const flow = { port: 81, sport: 40081, timeoutMs: 500 };
      assert((await far.probe!.udp(old.ips[0], flow)).ok, "the UDP flow to old does not work");
      const address = old.ips[0];
      // old is deleted while its Pod object lingers (terminating: its address still listed).
      await cluster.deletePod(old, { keepObject: true });
      const next = await cluster.addPod(n1, {
        namespace: "reuse",
        name: "successor",
        labels: { role: "successor" },
        ips: [address],
        probeFirst: true,
      });
      assertEquals(next.ips[0], address, "IPAM did not hand out the freed address");
      const [tcp, udp] = await Promise.all([
        probeFor([next], server.ips[0], 3000, { ways: 3 }),
        (async () => {
          let answered = 0;
          for (let i = 0; i < 10; i++) if ((await far.probe!.udp(address, flow)).ok) answered++;
          return answered;
        })(),
      ]);
      assert(tcp.attempts >= 20, `only ${tcp.attempts} attempts`);
      assertEquals(tcp.connected, [], "the successor inherited old's role=client");
      assertEquals(udp, 0, "the UDP flow to old's address reached its next owner");
      // DEL told the agent, which removed the entries (DEL then does not walk them again).
      const del = (await pluginLines(n1, "DEL")).at(-1)!;
      assertEquals(del.agent, "released", JSON.stringify(del));
      assertMatch(await agentLog(n1), new RegExp(`conntrack entries removed.*"${address}"`));
      await cluster.apiDelete("pods", "reuse/old");
    },
  );
});

Deno.test({
  name:
    "a burst of 16 ADDs at 8-way is admitted; an unseen Pod is admitted isolated until published; the agent away fails ADD with 11, STATUS 50; a restart rebuilds the bindings, nothing open between",
  ignore,
}, async (t) => {
  const { cluster, nc } = await twoNodes();
  await using _ = cluster;
  const [n1, n2] = cluster.nodes;
  await namespace(cluster, "clients");
  await namespace(cluster, "later");
  await namespace(cluster, "closed");
  await netpol(cluster, "later", "from-clients", {
    podSelector: { matchLabels: { app: "later" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "clients" } } }] }],
  });
  await netpol(cluster, "closed", "deny-in", { podSelector: {}, policyTypes: ["Ingress"] });
  const near = await cluster.addPod(n1, { namespace: "clients", name: "near" });
  const far = await cluster.addPod(n2, { namespace: "clients", name: "far" });
  await waitEnforced(nc);

  await t.step("a burst of 16 ADDs at 8-way, all admitted", async () => {
    const queue = Array.from({ length: 16 }, (_, i) => i);
    const added: Pod[] = [];
    const started = performance.now();
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        added.push(await cluster.addPod(n1, { namespace: "closed", name: `burst-${i}` }));
      }
    }));
    assertEquals(added.length, 16);
    console.log(`  16 ADDs at 8-way: ${(performance.now() - started).toFixed(0)} ms`);
    for (const p of added.slice(0, 4)) {
      assertEquals((await near.probe!.tcp(p.ips[0], { port: 80, timeoutMs: 300 })).ok, false);
    }
  });

  await t.step(
    "a Pod the agent has never seen: admitted isolated, opened once it is known",
    async () => {
      const started = performance.now();
      const pod = await cluster.addPod(n1, {
        namespace: "later",
        name: "unseen",
        labels: { app: "later" },
        unpublished: true,
        probeFirst: true,
      });
      const took = performance.now() - started;
      assert(took >= 1900 && took < 5000, `ADD of an unseen pod took ${took.toFixed(0)} ms`);
      assertMatch(
        await agentLog(n1),
        /pod admitted isolated until its Pod object is known.*later\/unseen/,
      );
      const closed = await probeFor([near, far], pod.ips[0], 1500);
      assertEquals(closed.connected, [], "an unknown pod was open");
      await cluster.publishPod(pod);
      await waitEnforced(nc);
      for (const c of [near, far]) {
        assert((await c.probe!.tcp(pod.ips[0], { port: 80 })).ok, `${c.name} cannot reach it`);
      }
    },
  );

  // Its addresses never reach the API: after a restart only the IPAM store knows whose they are.
  const quiet = await cluster.addPod(n1, {
    namespace: "later",
    name: "quiet",
    labels: { app: "later" },
    podIPsAfterMs: 600_000,
  });
  const denied = await cluster.addPod(n1, { namespace: "closed", name: "denied" });
  await waitEnforced(nc);
  assert((await near.probe!.tcp(quiet.ips[0], { port: 80 })).ok, "quiet is not served");

  await t.step(
    "the agent away: ADD fails with 11 and leaves nothing, STATUS answers 50",
    async () => {
      let restarted = false;
      const watch = probeUntil([near, far], denied.ips[0], () => restarted);
      try {
        await cluster.stopAgent(n1);
        const before = await nodeState(n1);
        let error = "";
        try {
          await cluster.addPod(n1, { namespace: "closed", name: "refused" });
        } catch (err) {
          error = (err as Error).message;
        }
        assertMatch(error, /"code":\s*11/);
        assertMatch(error, /agent\.sock/);
        assertEquals(await nodeState(n1), before, "ADD left something behind");
        const status = await cluster.execPlugin(n1, "STATUS");
        assertEquals(JSON.parse(status.stdout).code, 50, status.stdout);
      } finally {
        if (!n1.agent) await cluster.startAgent(n1);
        // Probed on until the new agent has run a while (its first table replaced the old one).
        await waitFor("n1's agent healthy", 20000, () => cluster.agentHealthy(n1))
          .then(() => new Promise((r) => setTimeout(r, 1500)))
          .finally(() => restarted = true);
      }
      const seen = await watch;
      assert(seen.attempts >= 20, `only ${seen.attempts} attempts across the restart`);
      assertEquals(seen.connected, [], "the deny-all pod was open across the agent's restart");
    },
  );

  await t.step("the agent restarted: bindings rebuilt from the IPAM store", async () => {
    // Every pod of n1 (the refused ADD left none), read back from the IPAM store.
    const rebuilt = (await agentLog(n1)).split("\n").filter((l) =>
      l.includes('"bindings rebuilt from the IPAM store"')
    ).at(-1);
    assertEquals(JSON.parse(rebuilt!).attachments, n1.pods.length, rebuilt);
    await waitEnforced(nc);
    assertEquals(
      (await far.probe!.tcp(quiet.ips[0], { port: 80 })).ok,
      true,
      "quiet lost its chain",
    );
    const stranger = await cluster.addPod(n2, { namespace: "closed", name: "stranger" });
    assertEquals(
      (await stranger.probe!.tcp(quiet.ips[0], { port: 80, timeoutMs: 500 })).ok,
      false,
      "quiet, whose address only the IPAM store knows, is open after the restart",
    );
    // ADD works again.
    await cluster.addPod(n1, { namespace: "closed", name: "after" });
  });
});

/** Host veths and IPAM allocations of a node: what a failed ADD must not leave. */
async function nodeState(node: ClusterNode): Promise<{ veths: string[]; allocations: string[] }> {
  const links = JSON.parse(await run(["ip", "-n", node.nsName, "-j", "link", "show"])) as {
    ifname: string;
  }[];
  const dir = `${node.dir}/ipam/mycni`;
  const allocations: string[] = [];
  for await (const e of Deno.readDir(dir)) if (/^[0-9.]+$|:/.test(e.name)) allocations.push(e.name);
  return {
    veths: links.map((l) => l.ifname).filter((n) => n.startsWith("veth")).sort(),
    allocations: allocations.sort(),
  };
}
