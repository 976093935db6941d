// NetworkPolicy under faults, on the simulated cluster: a watch that expires (410 Gone), `nft`
// failing mid-sync (the kernel keeps the old ruleset whole; the agent's retry heals it), and the
// API server going away (the rules stay as they were). Malformed policies are in
// tests/integration/netpol_test.ts's truth tables.
import { join } from "node:path";
import { inNetns, run } from "../../lib/process/run.ts";
import { assert, assertMatch } from "../harness/assert.ts";
import { waitFor } from "../harness/cluster.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import {
  expectMatrix,
  policy,
  type ProbeSpec,
  Reachability,
  startNetpolCluster,
} from "../harness/netpol.ts";

const TCP80: ProbeSpec = { port: 80, protocol: "TCP", family: 4 };
const fromNs = (ns: string) => ({ from: [{ namespaceSelector: { matchLabels: { ns } } }] });

Deno.test({
  name: "NetworkPolicy rides out an expired watch, a failing nft and a vanished API server",
  ignore: !canRunPrivileged,
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using nc = await startNetpolCluster({ dualStack: false });
  const { cluster } = nc;
  const n1 = nc.pods.get("x/a")!.node;
  const deny = policy("x", "deny", { podSelector: {}, policyTypes: ["Ingress"] });
  const fromY = policy("x", "from", { podSelector: {}, ingress: [fromNs("y")] });
  await cluster.apiPut("networkpolicies", deny);
  await cluster.apiPut("networkpolicies", fromY);
  const onlyY = new Reachability(true).expectTo("x/", false).expect("y/", "x/", true)
    .allowLoopback();
  await expectMatrix(nc, onlyY, TCP80);

  await t.step(
    "a watch that expires (410) is listed again; later changes are enforced",
    async () => {
      await cluster.apiRequest("POST", "/_test/expire");
      await cluster.apiRequest("POST", "/_test/drop");
      await cluster.apiPut(
        "networkpolicies",
        policy("x", "from", { podSelector: {}, ingress: [fromNs("z")] }),
      );
      const onlyZ = new Reachability(true).expectTo("x/", false).expect("z/", "x/", true)
        .allowLoopback();
      await expectMatrix(nc, onlyZ, TCP80, 15000);
      await cluster.apiPut("networkpolicies", fromY);
      await expectMatrix(nc, onlyY, TCP80, 15000);
      const log = await Deno.readTextFile(join(n1.dir, "agent.log"));
      assertMatch(log, /watch expired, listing again/);
    },
  );

  await t.step("nft failing mid-sync keeps the old ruleset whole; the retry heals it", async () => {
    // An `nft` first on the agent's PATH that fails while a flag file exists.
    const bin = join(cluster.dir, "faulty-bin");
    const flag = join(cluster.dir, "nft-fails");
    await Deno.mkdir(bin, { recursive: true });
    await Deno.writeTextFile(
      join(bin, "nft"),
      `#!/bin/sh\nif [ -e ${flag} ]; then echo "nft: injected failure" >&2; exit 1; fi\nexec /usr/sbin/nft "$@"\n`,
      { mode: 0o755 },
    );
    await cluster.stopAgent(n1, "SIGTERM");
    await cluster.startAgent(n1, { env: { PATH: `${bin}:${Deno.env.get("PATH")}` } });
    await waitFor("n1's agent healthy again", 15000, () => cluster.agentHealthy(n1));
    await Deno.writeTextFile(flag, "");
    await cluster.apiPut(
      "networkpolicies",
      policy("x", "from", { podSelector: {}, ingress: [fromNs("z")] }),
    );
    // n1 cannot apply the change: its pods keep the old rules, whole (x/a is on n1).
    await waitFor(
      "n1 unhealthy while nft fails",
      10000,
      async () => !(await cluster.agentHealthy(n1)),
    );
    const onN1 = [...nc.pods].filter(([k, p]) => k.startsWith("x/") && p.node === n1).map(([k]) =>
      k
    );
    assert(onN1.length > 0, "no pod of x on n1");
    const stuck = new Reachability(true).expectTo("x/", false).allowLoopback();
    for (const k of onN1) stuck.expect("y/", k, true);
    for (const [k, p] of nc.pods) {
      if (k.startsWith("x/") && p.node !== n1) stuck.expect("z/", k, true);
    }
    await expectMatrix(nc, stuck, TCP80);
    await new Promise((r) => setTimeout(r, 1500)); // retries keep failing meanwhile
    await expectMatrix(nc, stuck, TCP80, 0);
    await Deno.remove(flag);
    const onlyZ = new Reachability(true).expectTo("x/", false).expect("z/", "x/", true)
      .allowLoopback();
    await expectMatrix(nc, onlyZ, TCP80, 15000);
    await waitFor("n1 healthy after the retry", 15000, () => cluster.agentHealthy(n1));
    const log = await Deno.readTextFile(join(n1.dir, "agent.log"));
    assertMatch(log, /injected failure/);
  });

  await t.step(
    "bridged traffic switched away from netfilter is brought back by the agent",
    async () => {
      // x/a and y/c share n1: their traffic only crosses the bridge (x admits z only by now).
      const yc = nc.pods.get("y/c")!;
      assert(yc.node === n1, "y/c is not on n1");
      const sysctl = (v?: string) =>
        run(inNetns(
          n1.netns,
          v === undefined
            ? ["cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"]
            : ["sh", "-c", `echo ${v} > /proc/sys/net/bridge/bridge-nf-call-iptables`],
        ));
      const reach = async () =>
        (await yc.probe!.tcp(nc.pods.get("x/a")!.ips[0], { port: 80, timeoutMs: 800 })).ok;
      assert(!(await reach()), "y/c reached isolated x/a");
      await sysctl("0");
      assert(await reach(), "with bridge-nf-call-iptables=0 the bridge should bypass the rules");
      // Any reconcile puts it back: here, a policy event.
      await cluster.apiPut(
        "networkpolicies",
        policy("x", "nudge", { podSelector: {}, ingress: [] }),
      );
      await waitFor(
        "bridge-nf-call-iptables back to 1",
        10000,
        async () => (await sysctl()).trim() === "1",
      );
      assert(!(await reach()), "y/c reaches isolated x/a again after the agent's fix");
      await cluster.apiDelete("networkpolicies", "x/nudge");
    },
  );

  await t.step("the API server going away leaves the rules as they were", async () => {
    const onlyZ = new Reachability(true).expectTo("x/", false).expect("z/", "x/", true)
      .allowLoopback();
    await cluster.stopApiServer();
    await waitFor("agents unhealthy without the API", 15000, async () => {
      for (const n of cluster.nodes) if (await cluster.agentHealthy(n)) return false;
      return true;
    });
    await expectMatrix(nc, onlyZ, TCP80, 0);
    await new Promise((r) => setTimeout(r, 3000)); // failed re-lists meanwhile change nothing
    await expectMatrix(nc, onlyZ, TCP80, 0);
  });
});
