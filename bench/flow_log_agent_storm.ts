// The flow log in a storm, at one node of the simulated cluster with the real agent: a pod on
// the other node sends 10,000 denied connection attempts a second (UDP, each a new flow) at a
// server pod whose policy admits only one client, while that client's iperf3 runs to the server
// through the same node. Printed: the server node's agent CPU (its own and its nft children's,
// over the storm) and RSS (before, after, peak), what it recorded and counted, and the allowed
// throughput during the storm against without it (runs interleaved, ABAB; median ratio).
// Targets (issue 20): agent CPU < 20% of a core, RSS bounded, allowed traffic ≥ 0.95×.
//   deno run -A --no-lock bench/flow_log_agent_storm.ts [--rate-per-s 10000] [--seconds 4] [--runs 3]
import { parseArgs } from "node:util";
import { inNetns, run } from "../lib/process/run.ts";
import { type ClusterNode, type Pod, startCluster } from "../tests/harness/cluster.ts";
import { canRunPrivileged } from "../tests/harness/netns.ts";
import { policy, waitEnforced } from "../tests/harness/netpol.ts";
import { line, memoryMiB } from "./bench_node.ts";
import { iperf, iperfServer } from "./iperf.ts";
import { median } from "./stats.ts";

const SENDER = new URL("../tests/harness/flow_sender.ts", import.meta.url).pathname;
const CPU_TARGET = 0.2;
const RATIO_TARGET = 0.95;

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "rate-per-s": { type: "string", default: "10000" },
      seconds: { type: "string", default: "4" },
      runs: { type: "string", default: "3" },
    },
  });
  const perSecond = Number(values["rate-per-s"]), seconds = Number(values.seconds);
  const runs = Number(values.runs);
  if (!canRunPrivileged) {
    console.error("flow_log_agent_storm: needs root (it creates network namespaces)");
    return 1;
  }
  await using cluster = await startCluster({
    nodes: 2,
    podsPerNode: 0,
    dualStack: false,
    mode: "api",
  });
  const [n1, n2] = cluster.nodes;
  await cluster.apiPut("namespaces", { metadata: { name: "s" } });
  const add = (node: ClusterNode, name: string) =>
    cluster.addPod(node, { namespace: "s", name, labels: { app: name } });
  const server = await add(n1, "server");
  const client = await add(n2, "client");
  const storm = await add(n2, "storm");
  const rv = await cluster.apiPut(
    "networkpolicies",
    policy("s", "only-client", {
      podSelector: { matchLabels: { app: "server" } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }] }],
    }),
  );
  await waitEnforced({ cluster }, rv);
  // A dropped first packet leaves no conntrack entry: the storm does not fill the table.
  const agent = n1.agent!.pid;
  const idle = memoryMiB(agent);
  const quiet: number[] = [], stormy: number[] = [];
  const cpu: number[] = [];
  let totals = { sent: 0, records: 0, dropped: 0 };
  const iperfd = await iperfServer(server, server.ips[0]);
  try {
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < runs; i++) {
      for (const withStorm of i % 2 ? [true, false] : [false, true]) {
        if (!withStorm) {
          quiet.push(await iperf(client, server.ips[0], seconds) / 1e9);
          continue;
        }
        const before = await metrics(n1);
        const cpu0 = cpuSeconds(agent), t0 = performance.now();
        // The storm runs a little longer than iperf on either side.
        const sending = send(storm, server, perSecond, seconds + 1);
        await new Promise((r) => setTimeout(r, 500));
        stormy.push(await iperf(client, server.ips[0], seconds) / 1e9);
        const sent = await sending;
        await new Promise((r) => setTimeout(r, 300));
        cpu.push((cpuSeconds(agent) - cpu0) / ((performance.now() - t0) / 1000));
        const after = await metrics(n1);
        totals = {
          sent: totals.sent + sent.sent,
          records: totals.records + after.records - before.records,
          dropped: totals.dropped + after.dropped - before.dropped,
        };
        console.log(
          `  storm run ${stormy.length}: sent ${sent.sent} in ${(sent.ms / 1000).toFixed(1)} s ` +
            `(${Math.round(sent.sent / (sent.ms / 1000))}/s)`,
        );
      }
    }
  } finally {
    await iperfd.stop("SIGTERM", 1000);
  }
  const mem = memoryMiB(agent);
  const ratio = median(stormy) / median(quiet);
  console.log(
    `flow log storm at one node: ~${perSecond} denied attempts/s for ${seconds + 1} s per run, ` +
      `${runs} runs, real agent (--flow-log denied, rate 100/s)`,
  );
  line(
    "agent CPU during the storm (own + nft)",
    cpu.map((c) => `${(100 * c).toFixed(1)}%`).join(", "),
    `< ${100 * CPU_TARGET}%`,
    Math.max(...cpu) < CPU_TARGET,
  );
  line(
    "agent RSS idle -> after (peak)",
    `${idle.rss.toFixed(1)} -> ${mem.rss.toFixed(1)} MiB (${mem.peak.toFixed(1)})`,
  );
  line(
    "denied attempts: sent / recorded / counted",
    `${totals.sent} / ${totals.records} / ${totals.dropped}`,
  );
  line(
    "allowed iperf3 during / without the storm",
    `${median(stormy).toFixed(2)} / ${median(quiet).toFixed(2)} Gbit/s = ${ratio.toFixed(3)}x`,
    `≥ ${RATIO_TARGET}x`,
    ratio >= RATIO_TARGET,
  );
  return 0;
}

/** `perSecond` new UDP flows a second for `seconds` from `from` to `to`'s address. */
async function send(
  from: Pod,
  to: Pod,
  perSecond: number,
  seconds: number,
): Promise<{ sent: number; ms: number }> {
  const out = await run(inNetns(from.netns, [
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
    "1",
    "--count",
    String(perSecond * seconds),
    "--rate",
    String(perSecond),
  ]));
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

/** CPU seconds of process `pid` and its waited-for children (the nft runs) so far. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime, stime, cutime, cstime (fields 14-17), in USER_HZ ticks.
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}

/** The flow log's counters on `node`'s /metrics. */
async function metrics(node: ClusterNode): Promise<{ records: number; dropped: number }> {
  const res = await node.probe!.http("http://127.0.0.1:9749/metrics", { timeoutMs: 3000 });
  const get = (name: string) =>
    Number(res.body?.match(new RegExp(`^${name} (\\d+)$`, "m"))?.[1] ?? NaN);
  return {
    records: get("mycni_flow_log_records_total"),
    dropped: get("mycni_flow_log_dropped_total"),
  };
}

if (import.meta.main) Deno.exit(await main());
