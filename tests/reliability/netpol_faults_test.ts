// NetworkPolicy under faults, on the simulated cluster: a watch that expires (410 Gone), the
// kernel refusing a transaction half-way (the table stays whole; the agent says so and heals once
// the kernel takes it), bridged traffic switched away from netfilter, and the API server going
// away (the agents stay up and the rules stay as they were). Every table is probed once, after
// the agents report enforcing the write (tests/harness/netpol.ts, waitEnforced). Malformed
// policies are in tests/integration/netpol_test.ts's truth tables.
import { join } from "node:path";
import { inNetns, run } from "../../lib/process/run.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { type AgentHealth, type ClusterNode, waitFor } from "../harness/cluster.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import {
  checkMatrix,
  type NetpolCluster,
  policy,
  type ProbeSpec,
  Reachability,
  startNetpolCluster,
  waitEnforced,
} from "../harness/netpol.ts";
import { listTable } from "../harness/nft.ts";

const TCP80: ProbeSpec = { port: 80, protocol: "TCP", family: 4 };
const fromNs = (ns: string) => ({ from: [{ namespaceSelector: { matchLabels: { ns } } }] });
/** x isolated, open to the pods of namespace `ns`. */
const onlyFrom = (ns: string) =>
  new Reachability(true).expectTo("x/", false).expect(`${ns}/`, "x/", true).allowLoopback();

/**
 * A stand-in `nft` first on the agent's PATH that runs the real one, but while `flag` exists
 * every transaction it is fed on stdin (`nft -f -`) ends with two more commands: a chain of ours,
 * which the kernel stages, and a rule jumping to a chain that does not exist, which nft's parser
 * accepts and the kernel refuses (ENOENT). So the kernel has staged the agent's whole change when
 * it refuses the transaction, and must drop all of it.
 */
function refusingNft(flag: string): string {
  return `#!/bin/sh
if [ -e ${flag} ] && [ "$1" = "-f" ] && [ "$2" = "-" ]; then
  { cat; printf '%s\\n' 'add chain inet mycni mctest_refused' \\
      'add rule inet mycni mctest_refused jump mctest_no_such_chain'; } | /usr/sbin/nft -f -
  exit $?
fi
exec /usr/sbin/nft "$@"
`;
}

/** The agent is running and answers /healthz (200 or 503); returns what it says. */
async function aliveAndAnswering(nc: NetpolCluster, node: ClusterNode): Promise<AgentHealth> {
  assert(node.agent && !node.agent.exited(), `${node.name}'s agent exited`);
  const h = await nc.cluster.agentHealth(node);
  assert(h !== undefined, `${node.name}'s agent does not answer /healthz`);
  return h;
}

Deno.test({
  name: "NetworkPolicy rides out an expired watch, a refused transaction and a vanished API server",
  ignore: !canRunPrivileged,
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using nc = await startNetpolCluster({ dualStack: false });
  const { cluster } = nc;
  const n1 = nc.pods.get("x/a")!.node;
  const others = cluster.nodes.filter((n) => n !== n1);
  const fromY = policy("x", "from", { podSelector: {}, ingress: [fromNs("y")] });
  const fromZ = policy("x", "from", { podSelector: {}, ingress: [fromNs("z")] });
  const fromZ80 = policy("x", "from", {
    podSelector: {},
    ingress: [{ ...fromNs("z"), ports: [{ protocol: "TCP", port: 80 }] }],
  });
  await cluster.apiPut("networkpolicies", fromY);
  await waitEnforced(nc);
  await checkMatrix(nc, onlyFrom("y"), TCP80);

  await t.step(
    "a watch that expires (410) is listed again; later changes are enforced",
    async () => {
      await cluster.apiRequest("POST", "/_test/expire");
      await cluster.apiRequest("POST", "/_test/drop");
      await waitEnforced(nc, await cluster.apiPut("networkpolicies", fromZ));
      await checkMatrix(nc, onlyFrom("z"), TCP80);
      await waitEnforced(nc, await cluster.apiPut("networkpolicies", fromY));
      await checkMatrix(nc, onlyFrom("y"), TCP80);
      const log = await Deno.readTextFile(join(n1.dir, "agent.log"));
      assertMatch(log, /watch expired, listing again/);
    },
  );

  await t.step(
    "a transaction the kernel refuses half-way leaves the table whole; the agent says so and heals",
    async () => {
      const bin = join(cluster.dir, "refusing-bin");
      const flag = join(cluster.dir, "nft-refused");
      await Deno.mkdir(bin, { recursive: true });
      await Deno.writeTextFile(join(bin, "nft"), refusingNft(flag), { mode: 0o755 });
      await cluster.stopAgent(n1, "SIGTERM");
      await cluster.startAgent(n1, { env: { PATH: `${bin}:${Deno.env.get("PATH")}` } });
      await waitEnforced(nc, cluster.policyWriteVersion(), { nodes: [n1] });
      const before = await listTable(n1.netns, "inet mycni");
      assert(before !== "" && !before.includes("mctest_refused"), `n1's table: ${before}`);

      await Deno.writeTextFile(flag, "");
      // A change of rules (a port now), which nft applies: a change of peers alone is set
      // elements, which go over nfnetlink without nft (lib/nft/sync.ts).
      const rv = await cluster.apiPut("networkpolicies", fromZ80);
      await waitEnforced(nc, rv, { nodes: others });
      // n1 cannot apply the change, and says why: the kernel's own refusal.
      let health: AgentHealth | undefined;
      await waitFor("n1 to report the refused transaction", 10000, async () => {
        health = await cluster.agentHealth(n1);
        return health?.status === 503 && /No such file or directory/.test(health.lastError);
      });
      assertMatch(health!.lastError, /Cannot sync the nftables table: .*mctest_no_such_chain/s);
      await new Promise((r) => setTimeout(r, 1500)); // retries, each refused, meanwhile
      health = await aliveAndAnswering(nc, n1);
      assert(
        BigInt(health.policy?.resourceVersion || "0") < BigInt(rv),
        `n1 claims to enforce ${rv}: ${JSON.stringify(health)}`,
      );
      assertEquals(await listTable(n1.netns, "inet mycni"), before, "n1's table changed");
      // On the datapath: n1's pods keep the old rules (from y), the other nodes' have the new.
      const stuck = new Reachability(true).expectTo("x/", false).allowLoopback();
      for (const [k, p] of nc.pods) {
        if (k.startsWith("x/")) stuck.expect(p.node === n1 ? "y/" : "z/", k, true);
      }
      assert([...nc.pods].some(([k, p]) => k.startsWith("x/") && p.node === n1), "no x on n1");
      await checkMatrix(nc, stuck, TCP80);

      await Deno.remove(flag);
      await waitEnforced(nc, rv, { nodes: [n1] });
      await waitFor("n1 healthy after the retry", 10000, () => cluster.agentHealthy(n1));
      await checkMatrix(nc, onlyFrom("z"), TCP80);
      assert((await listTable(n1.netns, "inet mycni")) !== before, "n1's table never changed");
      const log = await Deno.readTextFile(join(n1.dir, "agent.log"));
      assertMatch(log, /Could not process rule: No such file or directory/);
    },
  );

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
        (await yc.probe!.tcp(nc.pods.get("x/a")!.ips[0], { port: 80, timeoutMs: 1000 })).ok;
      assert(!(await reach()), "y/c reached isolated x/a");
      await sysctl("0");
      assert(await reach(), "with bridge-nf-call-iptables=0 the bridge should bypass the rules");
      // Any reconcile puts it back: here, a policy event.
      await waitEnforced(
        nc,
        await cluster.apiPut(
          "networkpolicies",
          policy("x", "nudge", { podSelector: {}, ingress: [] }),
        ),
      );
      assertEquals((await sysctl()).trim(), "1", "bridge-nf-call-iptables after the reconcile");
      assert(!(await reach()), "y/c reaches isolated x/a again after the agent's fix");
      await waitEnforced(nc, await cluster.apiDelete("networkpolicies", "x/nudge"));
    },
  );

  await t.step(
    "the API server going away leaves the agents up and the rules as they were",
    async () => {
      const rv = cluster.policyWriteVersion();
      await cluster.stopApiServer();
      await waitFor("agents unhealthy without the API", 15000, async () => {
        for (const n of cluster.nodes) if (await cluster.agentHealthy(n)) return false;
        return true;
      });
      for (let round = 0; round < 2; round++) {
        if (round === 1) await new Promise((r) => setTimeout(r, 3000)); // failed re-lists meanwhile
        for (const n of cluster.nodes) {
          const h = await aliveAndAnswering(nc, n);
          assert(
            h.status === 503 && !h.watching,
            `${n.name} without the API: ${JSON.stringify(h)}`,
          );
          assertEquals(h.policy?.resourceVersion, rv, `${n.name}'s policy resourceVersion`);
        }
        await checkMatrix(nc, onlyFrom("z"), TCP80);
      }
    },
  );
});
