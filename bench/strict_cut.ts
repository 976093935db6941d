// What strict mode's cut costs at one node of the simulated cluster, the real agent: a client pod
// on the other node sends 10,000 UDP flows (distinct ports, each its conntrack entry on the
// server's node) to a server pod, then a policy isolates the server and the agent cuts. Printed:
// the agent's own account ("connections cut": entries judged, cut, and where the time went:
// the conntrack dump, explain, the UDP hold, the deletes), the time from the write to its
// enforcement and to the cut's end, the entries left, and the agent's RSS. Twice: every entry
// denied (the worst: 10,000 explains, holds and deletes), and 1% denied (a policy that keeps
// one client: 10,000 judged, 100 cut).
//   deno run -A --no-lock bench/strict_cut.ts [--entries 10000]
import { parseArgs } from "node:util";
import { listConntrack } from "../lib/net/conntrack.ts";
import { inNetns, run } from "../lib/process/run.ts";
import { type Pod, startCluster, waitFor } from "../tests/harness/cluster.ts";
import { canRunPrivileged } from "../tests/harness/netns.ts";
import { policy, waitEnforced } from "../tests/harness/netpol.ts";
import { line, memoryMiB } from "./bench_node.ts";

const SENDER = new URL("../tests/harness/flow_sender.ts", import.meta.url).pathname;

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { entries: { type: "string", default: "10000" } },
  });
  const entries = Number(values.entries);
  if (!canRunPrivileged) {
    console.error("strict_cut: needs root (it creates network namespaces)");
    return 1;
  }
  await using cluster = await startCluster({
    nodes: 2,
    podsPerNode: 0,
    dualStack: false,
    mode: "api",
  });
  const [n1, n2] = cluster.nodes;
  // Unanswered UDP entries live 30 s by default: long enough to set up, not to be sure.
  await run(inNetns(n1.netns, ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=600"]));
  console.log(
    `strict mode's cut at one node, ${entries} conntrack entries (UDP flows), real agent`,
  );
  for (const [name, deniedShare] of [["all denied", 1], ["1% denied", 0.01]] as const) {
    await cluster.apiPut("namespaces", { metadata: { name: ns(name), labels: { ns: ns(name) } } });
    const add = (node: typeof n1, pod: string, app: string) =>
      cluster.addPod(node, { namespace: ns(name), name: pod, labels: { app } });
    const server = await add(n1, "server", "server");
    const kept = await add(n2, "kept", "kept");
    const cut = await add(n2, "cut", "cut");
    const denied = Math.round(entries * deniedShare);
    await send(cut, server, 10000, denied);
    if (entries - denied > 0) await send(kept, server, 30000, entries - denied);
    const before = count(n1.netns, server);
    const agentPid = n1.agent!.pid;
    const rssBefore = memoryMiB(agentPid).rss;
    const logFrom = (await Deno.readTextFile(`${n1.dir}/agent.log`)).length;
    const written = performance.now();
    // Isolated: only "kept" may send (with every entry denied, nobody may).
    const from = deniedShare < 1
      ? [{ from: [{ podSelector: { matchLabels: { app: "kept" } } }] }]
      : [];
    const rv = await cluster.apiPut(
      "networkpolicies",
      policy(ns(name), "isolate", {
        podSelector: { matchLabels: { app: "server" } },
        policyTypes: ["Ingress"],
        ingress: from,
      }),
    );
    const nc = {
      cluster,
      pods: new Map(),
      nodeFor: () => n1,
      [Symbol.asyncDispose]: async () => {},
    };
    await waitEnforced(nc, rv, { nodes: [n1] });
    const enforced = performance.now();
    const report = await cutReport(n1.dir, logFrom);
    const done = performance.now();
    const after = count(n1.netns, server);
    const mem = memoryMiB(agentPid);
    console.log(`${name}:`);
    line("  entries on the node before / after", `${before} / ${after}`);
    line("  the agent's cut", `${report.count} cut of ${report.judged} judged in ${report.ms} ms`);
    line("    where it went (ms)", JSON.stringify(report.stepsMs));
    line(
      "  write -> enforced -> cut logged",
      `${ms(enforced - written)} ms -> +${ms(done - enforced)} ms`,
    );
    line(
      "  agent RSS before -> after (peak)",
      `${rssBefore.toFixed(1)} -> ${mem.rss.toFixed(1)} MiB (${mem.peak.toFixed(1)})`,
    );
    await Promise.all([server, kept, cut].map((p) => cluster.deletePod(p)));
  }
  return 0;
}

const ns = (name: string) => name.startsWith("all") ? "all" : "some";
const ms = (x: number) => Math.round(x);

/** `count` UDP flows from `from` to `to`, one per destination port from `port`. */
async function send(from: Pod, to: Pod, port: number, count: number): Promise<void> {
  await run(inNetns(from.netns, [
    Deno.execPath(),
    "run",
    "-A",
    "--unstable-net",
    "--no-check",
    "--no-config",
    "--no-lock",
    SENDER,
    "udp",
    "--to",
    to.ips[0],
    "--port",
    String(port),
    "--count",
    String(count),
    "--rate",
    "20000",
  ]));
}

/** The node's conntrack entries touching `pod`. */
function count(netns: string, pod: Pod): number {
  return listConntrack({ addresses: [pod.ips[0]] }, { netns }).length;
}

interface CutReport {
  count: number;
  judged: number;
  ms: number;
  stepsMs: Record<string, number>;
}

/** Waits for the agent's "connections cut" line after `offset` in its log. */
async function cutReport(dir: string, offset: number): Promise<CutReport> {
  let report: CutReport | undefined;
  await waitFor("the agent's cut", 30000, async () => {
    const text = (await Deno.readTextFile(`${dir}/agent.log`)).slice(offset);
    const l = text.split("\n").find((l) => l.includes('"msg":"connections cut"'));
    if (l) report = JSON.parse(l);
    return report !== undefined;
  });
  return report!;
}

if (import.meta.main) Deno.exit(await main());
