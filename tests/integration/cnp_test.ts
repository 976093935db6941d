// ClusterNetworkPolicy with NetworkPolicy on the simulated cluster (3 nodes, dual-stack, the real
// agent on every node watching the fake API server; the netpol matrix: namespaces x, y, z with
// pods a, b, c). Every step writes to the API, waits until every agent reports enforcing the
// write (/healthz policy.resourceVersion; node writes count too), then probes the truth tables
// once (tests/harness/netpol.ts, truthLedger: a table must differ from the one before the step).
// Cases: the tiers around NetworkPolicy on both sides, networks, node peers following labels and
// nodes joining and leaving, priorities changed in place and the tie-break by name, deletion, a
// policy that cannot be enforced, `mycni-init explain`, and a cluster without the CRD.
import { assert } from "../harness/assert.ts";
import { type ClusterNode, waitFor } from "../harness/cluster.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import { PROBE_PORT } from "../harness/probe_client.ts";
import { CLUSTER_CIDRS } from "../harness/topology.ts";
import { inNetns, runOutput } from "../../lib/process/run.ts";
import {
  type NetpolCluster,
  policy,
  type ProbeSpec,
  Reachability,
  startNetpolCluster,
  type TableCheck,
  type TruthLedger,
  truthLedger,
  waitEnforced,
} from "../harness/netpol.ts";

type Obj = Record<string, unknown>;
type Family = 4 | 6;

/** A ClusterNetworkPolicy object. */
function cnp(name: string, tier: "Admin" | "Baseline", priority: number, spec: Obj): Obj {
  return {
    apiVersion: "policy.networking.k8s.io/v1alpha2",
    kind: "ClusterNetworkPolicy",
    metadata: { name },
    spec: { tier, priority, ...spec },
  };
}

const ns = (name: string) => ({ matchLabels: { ns: name } });
const everyNamespace = { namespaces: {} };
const fromNs = (name: string) => ({ namespaces: ns(name) });
const xa = { pods: { namespaceSelector: ns("x"), podSelector: { matchLabels: { pod: "a" } } } };
const rule = (action: string, peers: Obj[], extra: Obj = {}, way = "from") => ({
  action,
  [way]: peers,
  ...extra,
});
const ip = (nc: NetpolCluster, pod: string, family: Family = 4) =>
  nc.pods.get(pod)!.ips.find((a) => a.includes(":") === (family === 6))!;
const host = (nc: NetpolCluster, pod: string, family: Family = 4) =>
  `${ip(nc, pod, family)}/${family === 4 ? 32 : 128}`;

const TCP80_4: ProbeSpec = { port: 80, protocol: "TCP", family: 4 };
const TCP80_6: ProbeSpec = { port: 80, protocol: "TCP", family: 6 };
const both = (want: Reachability): TableCheck[] => [
  { probe: TCP80_4, want },
  { probe: TCP80_6, want },
];
const open = () => new Reachability(true);

/** Every object the test wrote and has not deleted, so a failed case leaves none behind. */
function liveObjects(nc: NetpolCluster) {
  const live = new Map<string, { resource: "networkpolicies" | "clusternetworkpolicies" }>();
  const keyOf = (o: Obj) => {
    const m = o.metadata as { namespace?: string; name: string };
    return m.namespace ? `${m.namespace}/${m.name}` : m.name;
  };
  const resourceOf = (o: Obj) =>
    o.kind === "ClusterNetworkPolicy"
      ? "clusternetworkpolicies" as const
      : "networkpolicies" as const;
  return {
    async apply(...objects: Obj[]) {
      for (const o of objects) {
        live.set(`${resourceOf(o)}:${keyOf(o)}`, { resource: resourceOf(o) });
        await nc.cluster.apiPut(resourceOf(o), o);
      }
    },
    async remove(...objects: Obj[]) {
      for (const o of objects) {
        live.delete(`${resourceOf(o)}:${keyOf(o)}`);
        await nc.cluster.apiDelete(resourceOf(o), keyOf(o));
      }
    },
    /** Forgets objects the server dropped by itself (a CRD removed). */
    forget(resource: "clusternetworkpolicies") {
      for (const [k, v] of live) if (v.resource === resource) live.delete(k);
    },
    async removeAll() {
      for (const [k, { resource }] of [...live]) {
        live.delete(k);
        await nc.cluster.apiDelete(resource, k.slice(resource.length + 1));
      }
    },
  };
}

Deno.test({
  name: "ClusterNetworkPolicy with NetworkPolicy on a 3-node dual-stack cluster",
  ignore: !canRunPrivileged,
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const started = performance.now();
  await using nc = await startNetpolCluster();
  const ledger = truthLedger(nc);
  const live = liveObjects(nc);
  const { apply, remove } = live;
  // CNP_CASES=<regex> runs only the matching cases (while working on one).
  const only = Deno.env.get("CNP_CASES");
  const runCase = async (
    name: string,
    fn: () => Promise<void>,
    restore?: () => Promise<unknown>,
  ) => {
    if (only && !new RegExp(only).test(name)) return;
    await t.step(name, async () => {
      let passed = false;
      try {
        await fn();
        passed = true;
      } finally {
        const reset = ledger.reset(`${name}: every policy removed`, async () => {
          await restore?.();
          await live.removeAll();
        });
        if (passed) await reset;
        else await reset.catch((err) => console.error(`clean-up after the failure: ${err}`));
      }
    });
  };

  await runCase("Admin Accept opens what a NetworkPolicy denies", async () => {
    const closed = () => open().expectTo("x/", false).allowLoopback();
    await ledger.step(
      "x isolated by a NetworkPolicy",
      () => apply(denyIngress("x")),
      both(closed()),
    );
    await ledger.step(
      "Admin Accept into x from y",
      () =>
        apply(
          cnp("accept-y", "Admin", 10, {
            subject: fromNs("x"),
            ingress: [rule("Accept", [fromNs("y")])],
          }),
        ),
      both(closed().expect("y/", "x/", true)),
    );
  });

  await runCase("Admin Deny closes what a NetworkPolicy allows (egress)", async () => {
    const toY = () => open().expectFrom("x/", false).expect("x/", "y/", true).allowLoopback();
    await ledger.step(
      "x may only talk to y (NetworkPolicy)",
      () =>
        apply(policy("x", "to-y", {
          podSelector: {},
          policyTypes: ["Egress"],
          egress: [{ to: [{ namespaceSelector: ns("y") }] }],
        })),
      both(toY()),
    );
    await ledger.step(
      "Admin Deny from x to y",
      () =>
        apply(cnp("deny-y", "Admin", 10, {
          subject: fromNs("x"),
          egress: [rule("Deny", [fromNs("y")], {}, "to")],
        })),
      both(toY().expect("x/", "y/", false)),
    );
  });

  await runCase("Admin Pass hands the decision to the NetworkPolicies", async () => {
    const passY = cnp("pass-y", "Admin", 10, {
      subject: fromNs("x"),
      ingress: [rule("Pass", [fromNs("y")]), rule("Deny", [everyNamespace])],
    });
    const onlyY = () => open().expectTo("x/", false).expect("y/", "x/", true).allowLoopback();
    await ledger.step("Pass from y, Deny from everyone else", () => apply(passY), both(onlyY()));
    await ledger.step(
      "a NetworkPolicy in x allows y/a only",
      () =>
        apply(policy("x", "from-ya", {
          podSelector: {},
          ingress: [{
            from: [{ namespaceSelector: ns("y"), podSelector: { matchLabels: { pod: "a" } } }],
          }],
        })),
      both(onlyY().expect("y/", "x/", false).expect("y/a", "x/", true)),
    );
  });

  await runCase("Baseline default-deny applies where no NetworkPolicy decides", async () => {
    const denyAll = () => new Reachability(false).allowLoopback();
    await ledger.step(
      "Baseline: every pod denies ingress from every pod",
      () =>
        apply(cnp("default-deny", "Baseline", 100, {
          subject: everyNamespace,
          ingress: [rule("Deny", [everyNamespace])],
        })),
      both(denyAll()),
    );
    await ledger.step(
      "a NetworkPolicy opens x to everyone",
      () => apply(policy("x", "allow-all", { podSelector: {}, ingress: [{}] })),
      both(denyAll().expectTo("x/", true)),
    );
  });

  await runCase(
    "networks: a narrower Deny before a wider Accept, each family its own",
    async () => {
      const policyWith = (deny: string[]) =>
        cnp("xa-out", "Admin", 10, {
          subject: xa,
          egress: [
            rule("Deny", [{ networks: deny }], { name: "not-yb" }, "to"),
            rule("Accept", [{ networks: [...CLUSTER_CIDRS] }], { name: "cluster" }, "to"),
            rule("Deny", [{ networks: ["0.0.0.0/0", "::/0"] }], { name: "nothing-else" }, "to"),
          ],
        });
      const noYb = () => open().expect("x/a", "y/b", false);
      await ledger.step(
        "Deny y/b's IPv4 address, Accept the cluster, Deny the rest",
        () => apply(policyWith([host(nc, "y/b")])),
        [
          { probe: TCP80_4, want: noYb() },
          { probe: TCP80_6, want: open(), unchanged: true },
        ],
      );
      // The wide Accept is before "nothing-else": pods answer, the world outside does not.
      const external = nc.cluster.external.ips;
      for (const [from, want] of [["x/a", false], ["y/a", true]] as const) {
        for (const address of external) {
          const r = await nc.pods.get(from)!.probe!.tcp(address, { timeoutMs: 1000 });
          assert(
            r.ok === want,
            `${from} -> ${address} (outside the cluster): ${r.ok ? "connects" : "fails"}`,
          );
        }
      }
      await ledger.step(
        "and y/b's IPv6 address",
        () => apply(policyWith([host(nc, "y/b"), host(nc, "y/b", 6)])),
        [
          { probe: TCP80_4, want: noYb(), unchanged: true },
          { probe: TCP80_6, want: noYb() },
        ],
      );
    },
  );

  await runCase(
    "priorities changed in place, the same priority ordered by name, a policy deleted",
    async () => {
      const accept = (name: string, priority: number) =>
        cnp(name, "Admin", priority, {
          subject: fromNs("x"),
          ingress: [rule("Accept", [fromNs("y")])],
        });
      const deny = cnp("b-deny", "Admin", 20, {
        subject: fromNs("x"),
        ingress: [rule("Deny", [fromNs("y"), fromNs("z")])],
      });
      const noZ = () => open().expect("z/", "x/", false);
      const noYZ = () => noZ().expect("y/", "x/", false);
      await ledger.step(
        "a-accept at 10 before b-deny at 20",
        () => apply(accept("a-accept", 10), deny),
        [
          { probe: TCP80_4, want: noZ() },
        ],
      );
      await ledger.step("a-accept moved to 30", () => apply(accept("a-accept", 30)), [
        { probe: TCP80_4, want: noYZ() },
      ]);
      await ledger.step(
        "a-accept at 20, beside b-deny: a before b",
        () => apply(accept("a-accept", 20)),
        [
          { probe: TCP80_4, want: noZ() },
        ],
      );
      await ledger.step("a-accept replaced by c-accept at 20: b before c", async () => {
        await remove(accept("a-accept", 20));
        await apply(accept("c-accept", 20));
      }, [{ probe: TCP80_4, want: noYZ() }]);
      await ledger.step("b-deny deleted", () => remove(deny), [{ probe: TCP80_4, want: open() }]);
    },
  );

  await runCase(
    "a ClusterNetworkPolicy that cannot be enforced fails closed, logged and counted",
    async () => {
      const broken = cnp("broken-cidr", "Admin", 5, {
        subject: xa,
        egress: [rule("Deny", [{ networks: ["10.0.0.0/33"] }], { name: "bad" }, "to")],
      });
      await ledger.step(
        "x/a's egress denied (its only direction), both families",
        () => apply(broken),
        both(open().expectFrom("x/a", false).allowLoopback()),
      );
      for (const node of nc.cluster.nodes) {
        const health = await nc.cluster.agentHealth(node);
        assert(
          health?.ok,
          `${node.name} is not healthy with a broken policy: ${JSON.stringify(health)}`,
        );
        assert(
          health.policy?.clusterNetworkPolicies.errors === 1,
          `${node.name}: ${JSON.stringify(health.policy)}`,
        );
        const metrics = await metricsOf(node);
        assert(
          /^mycni_cluster_network_policy_errors 1$/m.test(metrics),
          `${node.name} metrics:\n${metrics}`,
        );
        assert(/^mycni_cluster_network_policies\{tier="Admin"\} 1$/m.test(metrics), metrics);
        const lines = (await Deno.readTextFile(`${node.dir}/agent.log`)).split("\n")
          .filter((l) => l.includes("ClusterNetworkPolicy cannot be enforced exactly"));
        assert(lines.length === 1, `${node.name} logged the error ${lines.length} times`);
        assert(lines[0].includes('"broken-cidr"') && lines[0].includes("networks"), lines[0]);
      }
    },
  );

  await runCase(
    "mycni-init explain names the stage, policy, priority, rule and action",
    async () => {
      await ledger.step("Admin: no z into x; Baseline: nothing into y", () =>
        apply(
          cnp("lockdown-x", "Admin", 10, {
            subject: fromNs("x"),
            ingress: [{ name: "no-z", action: "Deny", from: [fromNs("z")] }],
          }),
          cnp("default-deny-y", "Baseline", 50, {
            subject: fromNs("y"),
            ingress: [{ name: "deny-all", action: "Deny", from: [everyNamespace] }],
          }),
        ), [{
        probe: TCP80_4,
        want: open().expect("z/", "x/", false).expectTo("y/", false).allowLoopback(),
      }]);
      await explainAgrees(nc, [
        {
          from: "z/a",
          to: "x/a",
          allowed: false,
          says: /stage Admin: policy lockdown-x, priority 10, ingress rule 0 "no-z", action Deny/,
        },
        {
          from: "x/b",
          to: "y/b",
          allowed: false,
          says:
            /stage Baseline: policy default-deny-y, priority 50, ingress rule 0 "deny-all", action Deny/,
        },
        { from: "y/a", to: "x/c", allowed: true, says: /ingress: allowed: .*\n\s+stage default/ },
      ]);
    },
  );

  await runCase("nodes peers follow node labels, and nodes joining and leaving", async () => {
    await nodePeers(nc, apply);
  }, async () => {
    for (const n of nc.cluster.nodes) {
      if (Object.keys(n.labels).length === 0) continue;
      n.labels = {};
      await nc.cluster.publishNode(n);
    }
  });

  await runCase(
    "without the CRD the agents enforce NetworkPolicy alone and pick CNPs up once it is installed",
    async () => {
      await crdAbsentThenInstalled(nc, ledger, live);
    },
    () => nc.cluster.apiRequest("POST", "/_test/served/clusternetworkpolicies"),
  );

  const figures = ledger.figures;
  const checks = figures.flatMap((f) => f.checks);
  const enforce = figures.map((f) => f.enforceMs).sort((a, b) => a - b);
  console.log(
    `cnp: ${figures.length} steps, ${checks.length} truth tables of 81 pairs, ` +
      `${Math.round((performance.now() - started) / 1000)} s; every agent enforcing a change: ` +
      `median ${enforce[enforce.length >> 1] ?? 0} ms, max ${enforce.at(-1) ?? 0} ms`,
  );
});

function denyIngress(namespace: string): Obj {
  return policy(namespace, "deny", { podSelector: {}, policyTypes: ["Ingress"] });
}

async function metricsOf(node: ClusterNode): Promise<string> {
  const res = await node.probe!.http("http://127.0.0.1:9749/metrics", { timeoutMs: 2000 });
  return res.body ?? "";
}

/** `mycni-init explain` (the built CLI, in the source pod's node) about TCP 80 flows. */
async function explainCli(
  nc: NetpolCluster,
  node: ClusterNode,
  from: string,
  to: string,
  port = "80/TCP",
) {
  const argv = ["explain", "--from", from, "--to", to, "--port", port];
  const out = await runOutput(inNetns(node.netns, [`${nc.cluster.binDir}/mycni-init`, ...argv]));
  return { code: out.code, text: out.stdout + out.stderr, argv: argv.join(" ") };
}

/** Each flow: explain's verdict, its words, and a real TCP connection must all agree. */
async function explainAgrees(
  nc: NetpolCluster,
  flows: readonly { from: string; to: string; allowed: boolean; says: RegExp }[],
): Promise<void> {
  const wrong: string[] = [];
  for (const f of flows) {
    const answer = await explainCli(nc, nc.pods.get(f.from)!.node, f.from, f.to);
    const want = f.allowed ? "ALLOWED" : "DENIED";
    if (
      answer.code !== (f.allowed ? 0 : 1) || !answer.text.startsWith(want) ||
      !f.says.test(answer.text)
    ) {
      wrong.push(
        `mycni-init ${answer.argv} exited ${answer.code}, want ${want} saying ${f.says}:\n${answer.text}`,
      );
    }
    console.log(`mycni-init ${answer.argv}\n${answer.text.trimEnd()}`);
    const probe = nc.pods.get(f.from)!.probe!;
    let ok = false;
    for (let i = 0; i < (f.allowed ? 3 : 1) && !ok; i++) {
      ok = (await probe.tcp(ip(nc, f.to), { port: 80, timeoutMs: 1000 })).ok;
    }
    if (ok !== f.allowed) {
      wrong.push(`${f.from} -> ${f.to} TCP 80 ${ok ? "connects" : "fails"}, explain says ${want}`);
    }
  }
  assert(wrong.length === 0, `explain and the datapath disagree:\n${wrong.join("\n")}`);
}

/**
 * Egress from x denied to nodes labelled zone=blocked, probed from x/a, x/b, x/c and y/a to
 * every node's address (TCP to its probe, both families): n2 labelled, then n3 instead, then a
 * node joining labelled, then leaving (explain says the rule no longer has its address). A pod
 * and its own node always talk.
 */
async function nodePeers(
  nc: NetpolCluster,
  apply: (...objects: Obj[]) => Promise<void>,
): Promise<void> {
  const { cluster } = nc;
  const sources = ["x/a", "x/b", "x/c", "y/a"];
  /** What the labels say: x's pods reach no zone=blocked node but their own. */
  const expected = () => {
    const want = new Map<string, boolean>();
    for (const from of sources) {
      for (const node of cluster.nodes) {
        const pod = nc.pods.get(from)!;
        const blocked = from.startsWith("x/") && node.labels.zone === "blocked" &&
          pod.node !== node;
        for (const address of node.ips) want.set(`${from} -> ${node.name} ${address}`, !blocked);
      }
    }
    return want;
  };
  let before = JSON.stringify([...expected()]); // nothing labelled: every pod reaches every node
  /** Waits for the newest write, probes every source to every node once, compares. */
  const check = async (label: string) => {
    const want = expected();
    const text = JSON.stringify([...want]);
    assert(text !== before, `${label}: the expected table is the one before the change`);
    before = text;
    await waitEnforced(nc);
    const got = await Promise.all([...want].map(async ([key, allowed]) => {
      const [from, , , address] = key.split(" ");
      let ok = false;
      for (let i = 0; i < (allowed ? 3 : 1) && !ok; i++) {
        const probe = nc.pods.get(from)!.probe!;
        ok = (await probe.tcp(address, { port: PROBE_PORT, timeoutMs: 1000 })).ok;
      }
      return ok === allowed
        ? ""
        : `${key}: ${ok ? "connects" : "fails"}, want ${allowed ? "connects" : "fails"}`;
    }));
    const wrong = got.filter((g) => g !== "");
    assert(wrong.length === 0, `${label}:\n${wrong.join("\n")}${await cluster.logs(8)}`);
  };
  const label = async (node: ClusterNode, zone?: string) => {
    node.labels = zone === undefined ? {} : { zone };
    await cluster.publishNode(node);
  };
  const [, n2, n3] = cluster.nodes;
  await apply(cnp("no-blocked-nodes", "Admin", 10, {
    subject: fromNs("x"),
    egress: [{
      name: "blocked",
      action: "Deny",
      to: [{ nodes: { matchLabels: { zone: "blocked" } } }],
    }],
  }));
  await label(n2, "blocked");
  await check("n2 labelled zone=blocked");
  await label(n2);
  await label(n3, "blocked");
  await check("n2 unlabelled, n3 labelled");
  const n4 = await cluster.addNode({ pods: 0, labels: { zone: "blocked" } });
  await check("n4 joined labelled");
  const n4ip = n4.ips[0];
  const xaNode = nc.pods.get("x/a")!.node;
  const joined = await explainCli(nc, xaNode, "x/a", n4ip, `${PROBE_PORT}/TCP`);
  assert(
    joined.code === 1 && /stage Admin: policy no-blocked-nodes/.test(joined.text),
    joined.text,
  );
  await cluster.removeNode(n4);
  await waitEnforced(nc);
  const left = await explainCli(nc, xaNode, "x/a", n4ip, `${PROBE_PORT}/TCP`);
  assert(left.code === 0 && /stage default/.test(left.text), `after n4 left:\n${left.text}`);
  const tokens = (await cluster.nodeState(xaNode)).nftables.split(/[^0-9a-fA-F.:]+/);
  assert(!tokens.includes(n4ip), `n4's address is still in ${xaNode.name}'s table`);
}

/**
 * The CRD removed (the API answers 404): every agent says so, stays healthy and enforces
 * NetworkPolicy changes, also after a restart; installed again, the agents pick CNPs up within
 * their retry period (30 s).
 */
async function crdAbsentThenInstalled(
  nc: NetpolCluster,
  ledger: TruthLedger,
  live: ReturnType<typeof liveObjects>,
): Promise<void> {
  const { cluster } = nc;
  const served = async (want: boolean, timeoutMs: number) => {
    await waitFor(
      `every agent to report clusternetworkpolicies served=${want}`,
      timeoutMs,
      async () => {
        for (const n of cluster.nodes) {
          const h = await cluster.agentHealth(n);
          if (!h?.ok || h.policy?.clusterNetworkPolicies.served !== want) return false;
          if (
            !(await metricsOf(n)).includes(`mycni_cluster_network_policy_served ${want ? 1 : 0}`)
          ) return false;
        }
        return true;
      },
    );
  };
  const noZ = () => open().expect("z/", "x/", false);
  await ledger.step(
    "Admin Deny from z into x",
    () =>
      live.apply(
        cnp("deny-z", "Admin", 10, {
          subject: fromNs("x"),
          ingress: [rule("Deny", [fromNs("z")])],
        }),
      ),
    [
      { probe: TCP80_4, want: noZ() },
    ],
  );
  await cluster.apiRequest("POST", "/_test/absent/clusternetworkpolicies");
  live.forget("clusternetworkpolicies");
  await served(false, 15000);
  const yClosed = () => open().expectTo("y/", false).allowLoopback();
  await ledger.step(
    "CRD removed (deny-z with it), y isolated by a NetworkPolicy",
    () => live.apply(denyIngress("y")),
    [
      { probe: TCP80_4, want: yClosed() },
    ],
  );
  const restarted = nc.pods.get("x/a")!.node;
  await cluster.restartAgent(restarted);
  await waitFor(
    `${restarted.name}'s agent healthy without the CRD`,
    20000,
    () => cluster.agentHealthy(restarted),
  );
  await served(false, 5000);
  const log = await Deno.readTextFile(`${restarted.dir}/agent.log`);
  assert(
    log.includes("collection not served"),
    "the restarted agent did not say it runs without the CRD",
  );
  await ledger.step(
    "x isolated too (the restarted agent enforces it)",
    () => live.apply(denyIngress("x")),
    [
      { probe: TCP80_4, want: yClosed().expectTo("x/", false).allowLoopback() },
    ],
  );
  const installedAt = performance.now();
  await cluster.apiRequest("POST", "/_test/served/clusternetworkpolicies");
  await served(true, 45000);
  const pickedUpMs = Math.round(performance.now() - installedAt);
  await ledger.step(
    "CRD installed: Admin Accept from z into x over the NetworkPolicy",
    () =>
      live.apply(
        cnp("accept-z", "Admin", 10, {
          subject: fromNs("x"),
          ingress: [rule("Accept", [fromNs("z")])],
        }),
      ),
    [
      {
        probe: TCP80_4,
        want: yClosed().expectTo("x/", false).expect("z/", "x/", true).allowLoopback(),
      },
    ],
  );
  console.log(`cnp: a CRD installed later was picked up by every agent in ${pickedUpMs} ms`);
}
