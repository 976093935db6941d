// What the flow log costs the agent in a storm of denied connection attempts: a client sends
// ~10,000 new flows a second for 5 s at a server its router's table denies (tests/harness/
// flow_lab.ts, the agent's table shape with the log rules), while a subscriber process — the
// agent's flow log pipeline alone: nfnetlink_log socket, records, attribution, ring, JSON lines
// — reads them. Printed: its CPU and memory, what it recorded, what was counted instead. Twice:
// at the default rate (100/s, the kernel limit does the work) and with the limit out of the way
// (every flow reaches the agent, which then rate-limits itself).
//   deno run -A --no-lock bench/flow_log_storm.ts [--rate-per-s 10000] [--seconds 5]
import { parseArgs } from "node:util";
import { createLogger } from "../lib/log/logger.ts";
import { NflogSubscriber } from "../lib/net/nflog.ts";
import { FlowLog } from "../lib/node/flow_log.ts";
import {
  FLOW_LOG_DROPPED_COUNTER,
  FLOW_LOG_GROUP,
  flowLogIndex,
} from "../lib/policy/flow_log_rules.ts";
import {
  counterPackets,
  flowLab,
  LAB,
  labTable,
  loadTable,
  sendFlows,
} from "../tests/harness/flow_lab.ts";
import { memoryMiB } from "./bench_node.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    "rate-per-s": { type: "string", default: "10000" },
    seconds: { type: "string", default: "5" },
    subscriber: { type: "string" },
    "agent-rate": { type: "string", default: "100" },
  },
});
const DECIDER = { direction: "ingress" as const, policies: ["y/deny-all"] };

if (values.subscriber) await subscriber(values.subscriber, Number(values["agent-rate"]));
else await storm(Number(values["rate-per-s"]), Number(values.seconds));

/** The subscriber process: reads until stdin closes, then prints its counts. */
async function subscriber(netns: string, rate: number): Promise<void> {
  const index = flowLogIndex([DECIDER]);
  const pods = new Map<string, string>([[LAB.client[4], "x/a"], [LAB.server[4], "y/b"]]);
  let bytes = 0;
  const log = new FlowLog({
    rate,
    // The agent writes each record to stderr; here the line is built and counted, not printed.
    log: createLogger((line) => bytes += line.length),
    attribution: () => ({ podOf: (ip) => pods.get(ip), decider: (id) => index.get(id) }),
  });
  using sub = NflogSubscriber.open(FLOW_LOG_GROUP, { netns });
  const stop = new AbortController();
  const reading = sub.run((p) => log.add(p), stop.signal);
  console.log(JSON.stringify({ ready: true }));
  for await (const _ of Deno.stdin.readable) { /* until closed */ }
  stop.abort();
  await reading;
  console.log(
    JSON.stringify({ ...sub.stats, ...log.counters, logBytes: bytes, kept: log.recent().length }),
  );
}

/** CPU seconds (user + system) of process `pid` so far. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ ticks
}

async function storm(perSecond: number, seconds: number): Promise<void> {
  console.log(
    `flow log storm: ${perSecond} denied new flows/s for ${seconds} s (UDP, distinct ports)`,
  );
  for (const kernelRate of [100, 1_000_000]) {
    await using lab = await flowLab();
    await loadTable(lab.router, labTable(DECIDER, kernelRate));
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-lock",
        new URL(import.meta.url).pathname,
        "--subscriber",
        lab.router.path,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    const nextLine = async () => {
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) throw new Error("subscriber ended early");
        buffered += value;
      }
      const at = buffered.indexOf("\n");
      const l = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      return JSON.parse(l);
    };
    await nextLine();
    const idle = memoryMiB(child.pid);
    const cpu0 = cpuSeconds(child.pid);
    const t0 = performance.now();
    const sent = await sendFlows(lab.client, [
      "udp",
      "--to",
      LAB.server[4],
      "--port",
      "1",
      "--count",
      String(perSecond * seconds),
      "--rate",
      String(perSecond),
    ]);
    await new Promise((r) => setTimeout(r, 500)); // the last batches
    const wall = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(child.pid) - cpu0;
    const mem = memoryMiB(child.pid);
    await child.stdin.close();
    const stats = await nextLine();
    await child.status;
    const over = await counterPackets(lab.router, FLOW_LOG_DROPPED_COUNTER);
    const dropped = await counterPackets(lab.router, "ingress_dropped");
    console.log(
      `kernel limit ${kernelRate === 100 ? "100/s (default)" : "off (1e6/s)"}, agent rate 100/s:`,
    );
    console.log(
      `  sent ${sent.sent} in ${(sent.ms / 1000).toFixed(1)} s (${
        Math.round(sent.sent / (sent.ms / 1000))
      }/s), dropped by the table ${dropped}`,
    );
    console.log(
      `  subscriber: received ${stats.packets} (lost ${stats.lost}, overruns ${stats.overruns}), ` +
        `recorded ${stats.records}, over the agent's rate ${stats.dropped}, kernel-counted ${over}, kept ${stats.kept}`,
    );
    console.log(
      `  subscriber CPU ${cpu.toFixed(2)} s over ${wall.toFixed(1)} s = ${
        (100 * cpu / wall).toFixed(1)
      }% of a core; ` +
        `RSS ${idle.rss.toFixed(1)} MiB idle -> ${mem.rss.toFixed(1)} MiB, peak ${
          mem.peak.toFixed(1)
        } MiB`,
    );
  }
}
