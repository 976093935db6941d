// The agent benchmarks' common parts: a node namespace to run in, the agent's memory, and one
// result line per figure. A node namespace for the agent benchmarks: one underlay link with this node's address
// (10.250.0.1/16, fd00:250::1/64), in which the benchmark re-executes itself, so it can talk to
// the agent's 127.0.0.1 health port and nothing changes outside the namespace.
import { run, runOutput } from "../lib/process/run.ts";
import { tempNetns } from "../tests/harness/netns.ts";

/**
 * Runs `script` again inside a fresh node namespace with `--inside <scratch dir>` and `args`,
 * after `setUp` (extra `ip` commands, e.g. routes), and prints what it printed. Exits 1 when the
 * inner run fails, with its stderr.
 *
 * @example
 * await runAsNode("mca", import.meta.url, ["--nodes", "1000"]);
 */
export async function runAsNode(
  prefix: string,
  script: string,
  args: readonly string[],
  setUp: readonly string[][] = [],
): Promise<void> {
  // Exit only once the namespace and the scratch dir are gone (Deno.exit skips `finally`).
  if (!(await runInNode(prefix, script, args, setUp))) Deno.exit(1);
}

async function runInNode(
  prefix: string,
  script: string,
  args: readonly string[],
  setUp: readonly string[][],
): Promise<boolean> {
  await using ns = await tempNetns(prefix);
  const x = (argv: string[]) => run(ns.exec(argv));
  await x(["ip", "link", "add", "u0", "type", "veth", "peer", "name", "u1"]);
  await x(["ip", "link", "set", "u1", "up"]);
  await x(["ip", "link", "set", "u0", "up"]);
  await x(["ip", "addr", "add", "10.250.0.1/16", "dev", "u0"]);
  await x(["ip", "addr", "add", "fd00:250::1/64", "dev", "u0", "nodad"]);
  for (const argv of setUp) await x(argv);
  const dir = await Deno.makeTempDir({ prefix: `${prefix}-bench-` });
  try {
    const me = new URL(script).pathname;
    const out = await runOutput(
      ns.exec([Deno.execPath(), "run", "-A", "--no-lock", me, "--inside", dir, ...args]),
    );
    console.log(out.stdout.trimEnd());
    if (out.code !== 0) console.error(out.stderr.trimEnd());
    return out.code === 0;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The agent's /metrics (on this namespace's 127.0.0.1:9749) as name -> value. */
export async function agentMetrics(): Promise<Record<string, number>> {
  const text = await (await fetch("http://127.0.0.1:9749/metrics")).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(mycni_\w+) (\S+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/** One reconcile the agent ran, as its /metrics told it. */
export interface Reconcile {
  /** performance.now() when it was seen. */
  readonly at: number;
  /** Its own duration (mycni_last_reconcile_duration_seconds), in ms. */
  readonly ms: number;
  /** nftables transactions and route changes it made. */
  readonly nftChanges: number;
  readonly routeChanges: number;
}

/**
 * Polls the agent's /metrics every 50 ms (its reconciles take longer than that, and its timer
 * runs one every 10 s) and returns each reconcile it ran, until `enough(seen)` or `maxMs`.
 *
 * @example
 * const seen = await watchReconciles((s) => s.length >= 3, 40_000);
 */
export async function watchReconciles(
  enough: (seen: readonly Reconcile[]) => boolean,
  maxMs: number,
): Promise<Reconcile[]> {
  const seen: Reconcile[] = [];
  const deadline = performance.now() + maxMs;
  let last = await agentMetrics();
  while (!enough(seen) && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    const now = await agentMetrics();
    const runs = now.mycni_reconciles_total - last.mycni_reconciles_total;
    if (runs === 0) continue;
    if (runs > 1) throw new Error(`${runs} reconciles within 50 ms: cannot tell them apart`);
    seen.push({
      at: performance.now(),
      ms: now.mycni_last_reconcile_duration_seconds * 1000,
      nftChanges: now.mycni_nft_changes_total - last.mycni_nft_changes_total,
      routeChanges: now.mycni_route_changes_total - last.mycni_route_changes_total,
    });
    last = now;
  }
  return seen;
}

/** Resident and peak memory of process `pid`, in MiB. */
export function memoryMiB(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

/** One figure: what, the value, the target, and whether it was met (no verdict without one). */
export function line(what: string, value: string, target = "", ok?: boolean): void {
  const verdict = ok === undefined ? "" : ok ? "OK" : "MISSED";
  console.log(`${what.padEnd(44)} ${value.padEnd(46)} ${target.padEnd(14)} ${verdict}`.trimEnd());
}
