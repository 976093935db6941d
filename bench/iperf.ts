// iperf3 between namespaces of the simulated cluster, for the throughput benchmarks.
import { inNetns, run } from "../lib/process/run.ts";
import { type Child, spawnChild } from "../tests/harness/child.ts";
import type { Host } from "../tests/harness/cluster.ts";

/** The port every iperf3 server of the benchmarks listens on. */
export const IPERF_PORT = 5201;

/** One iperf3 run from `from` to the server at `toIp`; bits/s received. */
export async function iperf(from: Host, toIp: string, seconds: number): Promise<number> {
  const out = await run(inNetns(from.netns, [
    "iperf3",
    "-c",
    toIp,
    "-p",
    String(IPERF_PORT),
    "-t",
    String(seconds),
    "-J",
  ]));
  const report = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return report.end.sum_received.bits_per_second;
}

/** An iperf3 server in `host`'s namespace bound to `ip`. */
export function iperfServer(host: Host, ip: string): Promise<Child> {
  return spawnChild(inNetns(host.netns, ["iperf3", "-s", "-p", String(IPERF_PORT), "-B", ip]));
}
