// `make demo`: a 4-node dual-stack simulated cluster on two underlay segments joined by a
// router (two nodes on each), two pods per node, the real agent on every node (watching a
// stand-in API server) and pods made by the real plugin; prints which backend each node pair uses
// (host-gw on a segment, VXLAN across) and who reaches whom (ping + TCP, with the source address
// each destination saw), then a NetworkPolicy act (with `mycni-init explain` and `mycni-init
// flows` on a denied flow) and a ClusterNetworkPolicy act, then tears it all down. Exits 1 if any
// check failed. `--static` runs the agents from a nodes file instead (no policy act), `--manual`
// wires everything by hand (no mycni at all).
import { canRunPrivileged } from "../tests/harness/netns.ts";
import { backendTable } from "../tests/harness/backends.ts";
import { clusterPolicyAct, policyAct } from "./demo_policy.ts";
import { type Cluster, type ClusterMode, startCluster } from "../tests/harness/cluster.ts";
import {
  type Check,
  describeFailures,
  formatMatrix,
  passed,
  planChecks,
  runChecks,
  summarise,
} from "../tests/harness/matrix.ts";

const tty = Deno.stdout.isTerminal();
const paint = (code: string) => (s: string) => tty ? `\x1b[${code}m${s}\x1b[0m` : s;
const green = paint("32"), red = paint("31"), bold = paint("1"), dim = paint("2");
const colour = (s: string) => s.replace(/✓nat|✓/g, (m) => green(m)).replace(/✗/g, (m) => red(m));

async function main(): Promise<number> {
  if (!canRunPrivileged) {
    console.error("demo: needs root (it creates network namespaces)");
    return 1;
  }
  const mode: ClusterMode = Deno.args.includes("--static")
    ? "static"
    : Deno.args.includes("--manual")
    ? "manual"
    : "api";
  const t0 = performance.now();
  const since = () => `${((performance.now() - t0) / 1000).toFixed(1)}s`;
  console.log(
    bold(
      `mycni demo: 4 nodes on 2 segments, 2 pods each, IPv4 + IPv6, agents in ${mode} mode`,
    ),
  );
  await using cluster = await startCluster({
    nodes: 4,
    podsPerNode: 2,
    dualStack: true,
    segments: 2,
    // Without agents, the hand-wired cluster reaches the other segment over VXLAN by hand.
    vxlanByHand: mode === "manual",
    mode,
    log: (line) => console.log(dim(`  [${since()}] ${line}`)),
  });
  // Ctrl-C still tears down: namespaces would otherwise outlive the demo.
  const onInterrupt = () => {
    console.log(dim("\ninterrupted: tearing down..."));
    Promise.resolve(cluster[Symbol.asyncDispose]()).finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  describeCluster(cluster);
  console.log(bold("backends: how each node reaches the other nodes' podCIDRs (its routes)"));
  for (const line of await backendTable(cluster)) console.log(`  ${line}`);
  console.log();
  const [first, ...others] = cluster.pods();
  await cluster.waitReachable(first, others.flatMap((p) => p.ips));
  console.log(dim(`  [${since()}] ${first.name} reaches every other pod`));
  const checks = await runChecks(cluster, planChecks(cluster));
  console.log(dim(`  [${since()}] ${checks.length} checks run (ping + TCP each)\n`));
  for (const family of [4, 6] as const) {
    console.log(
      bold(`IPv${family}`) +
        dim("  ✓ reached, real source   ✓nat reached, source = node   ✗ failed"),
    );
    console.log(colour(formatMatrix(cluster, checks, family)) + "\n");
  }
  printExternal(checks);
  let ok = printSummary(checks);
  if (mode === "api") {
    const out = { line: (l: string) => console.log(colour(l)), bold, ok: green, bad: red };
    ok = await policyAct(cluster, out) && ok;
    ok = await clusterPolicyAct(cluster, out) && ok;
  }
  if (!ok) console.log(red(describeFailures(checks)) + (await cluster.logs(10)));
  console.log(dim(`tearing down cluster ${cluster.id}...`));
  Deno.removeSignalListener("SIGINT", onInterrupt);
  return ok ? 0 : 1;
}

function describeCluster(cluster: Cluster): void {
  console.log(
    `\nexternal host ${
      cluster.external.ips.join(", ")
    }  (no routes to pods: answers only masqueraded traffic)`,
  );
  console.log(
    "segment A 192.0.2.0/24 fd00:192:0:2::/64, segment B 198.51.100.0/24 fd00:198:51:100::/64," +
      " joined by a router (.254, ::fe) that forwards node addresses only",
  );
  for (const n of cluster.nodes) {
    const pods = n.pods.map((p) => `${p.name} ${p.ips.join(" ")}`).join(", ");
    console.log(
      `node ${n.name} (segment ${"AB"[cluster.segmentOf(n)]}) ${n.ips.join(" ")}  podCIDRs ${
        n.podCIDRs.join(" ")
      }\n  pods: ${pods}`,
    );
  }
  console.log();
}

function printExternal(checks: readonly Check[]): void {
  console.log(bold("pod → external host: the source address the external host saw"));
  for (const c of checks.filter((c) => c.kind === "pod→external")) {
    const mark = passed(c) ? green("✓") : red("✗");
    const seen = c.seen ?? `nothing (${c.error ?? "no reply"})`;
    console.log(
      `  ${mark} ${c.from.name.padEnd(5)} ${c.fromIp.padEnd(18)} → ${
        c.toIp.padEnd(16)
      } seen as ${seen}`,
    );
  }
  console.log();
}

function printSummary(checks: readonly Check[]): boolean {
  console.log(bold("summary"));
  let all = true;
  for (const s of summarise(checks)) {
    const ok = s.ok === s.total;
    all &&= ok;
    console.log(
      `  ${ok ? green("✓") : red("✗")} ${s.kind.padEnd(22)} IPv${s.family}  ${s.ok}/${s.total}`,
    );
  }
  console.log(
    all ? green(bold("\nPASS: every path works\n")) : red(bold("\nFAIL: some paths are broken\n")),
  );
  return all;
}

if (import.meta.main) {
  let code = 1;
  try {
    code = await main();
  } catch (err) {
    console.error(red(`demo: ${(err as Error).message}`));
  }
  Deno.exit(code);
}
