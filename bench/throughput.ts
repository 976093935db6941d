// Cross-node pod↔pod TCP throughput (iperf3) in the simulated cluster, beside node↔node on the
// same underlay and beside the same pod path wired by hand (veth + bridge + static routes, no
// mycni, no iptables). Runs are interleaved so the shared machine's noise hits all three alike;
// the figure that matters is the ratio mycni / hand-wired (target ≥ 0.95).
//
//   deno run -A --no-lock bench/throughput.ts [--runs 3] [--seconds 3] [--json]
import { parseArgs } from "node:util";
import { type Cluster, type Host, startCluster } from "../tests/harness/cluster.ts";
import { iperf, iperfServer, median } from "./iperf.ts";
import { canRunPrivileged } from "../tests/harness/netns.ts";

/** Target from issue 3: mycni's pod path at least this fraction of the hand-wired one. */
const TARGET_RATIO = 0.95;

interface Path {
  readonly name: string;
  readonly from: Host;
  readonly to: Host;
  readonly toIp: string;
  readonly gbps: number[];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "3" },
      seconds: { type: "string", default: "3" },
      json: { type: "boolean", default: false },
    },
  });
  const runs = Number(values.runs), seconds = Number(values.seconds);
  if (!canRunPrivileged) {
    console.error("throughput: needs root (it creates network namespaces)");
    return 1;
  }
  const shape = { nodes: 2, podsPerNode: 1, dualStack: false, probes: false } as const;
  await using mycni = await startCluster({ ...shape, mode: "static" });
  // The hand-wired nodes get the same masquerade rule a hand-built cluster needs (init.sh had
  // one too): with a nat rule loaded, conntrack sees every packet on both paths alike.
  await using byHand = await startCluster({ ...shape, mode: "manual", masquerade: true });

  const pod = (c: Cluster, n: number) => c.nodes[n].pods[0];
  const paths: Path[] = [
    {
      name: "pod↔pod across nodes, mycni",
      from: pod(mycni, 0),
      to: pod(mycni, 1),
      toIp: "",
      gbps: [],
    },
    {
      name: "pod↔pod across nodes, by hand",
      from: pod(byHand, 0),
      to: pod(byHand, 1),
      toIp: "",
      gbps: [],
    },
    { name: "node↔node (underlay)", from: mycni.nodes[0], to: mycni.nodes[1], toIp: "", gbps: [] },
  ].map((p) => ({ ...p, toIp: p.to.ips[0] }));

  const servers = await Promise.all(paths.map((p) => iperfServer(p.to, p.toIp)));
  try {
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < runs; i++) {
      for (const p of paths) {
        p.gbps.push((await iperf(p.from, p.toIp, seconds)) / 1e9);
      }
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop("SIGTERM", 1000)));
  }

  const [viaMycni, viaHand, underlay] = paths.map((p) => median(p.gbps));
  const ratio = viaMycni / viaHand;
  // Noise from other work on the machine only ever lowers a run: best-of is the steadier figure.
  const best = (p: Path) => Math.max(...p.gbps);
  const bestRatio = best(paths[0]) / best(paths[1]);
  if (values.json) {
    console.log(JSON.stringify({
      runs,
      seconds,
      gbps: Object.fromEntries(paths.map((p) => [p.name, p.gbps])),
      ratioToHandWired: ratio,
      bestRatioToHandWired: bestRatio,
      ratioToUnderlay: viaMycni / underlay,
      target: TARGET_RATIO,
    }));
    return 0;
  }
  console.log(
    `TCP throughput, iperf3, ${runs} × ${seconds} s per path, interleaved (median, Gbit/s)`,
  );
  for (const p of paths) {
    const all = p.gbps.map((g) => g.toFixed(1)).join(" ");
    console.log(`  ${p.name.padEnd(32)} ${median(p.gbps).toFixed(2).padStart(7)}   (${all})`);
  }
  console.log(
    `  ratio mycni / hand-wired       ${ratio.toFixed(3).padStart(7)}   target ≥ ${TARGET_RATIO}: ${
      ratio >= TARGET_RATIO ? "met" : "NOT met"
    }`,
  );
  console.log(`  ratio mycni / hand-wired, best ${bestRatio.toFixed(3).padStart(7)}`);
  console.log(`  ratio mycni / node↔node        ${(viaMycni / underlay).toFixed(3).padStart(7)}`);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
