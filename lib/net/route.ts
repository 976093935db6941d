// Kernel routes the agent owns: marked with ROUTE_PROTO so listing, replacing and deleting only
// ever sees our own routes, never the host's or another agent's.
import { run, runOutput } from "../process/run.ts";

/** A route of ours found in the kernel. */
export interface CurrentRoute {
  readonly dst: string;
  readonly via?: string;
}

/**
 * The routing protocol number our routes carry (`ip route ... proto 77`). Unassigned in
 * /etc/iproute2/rt_protos and by the routing daemons we know of (bird 12, babel 42, bgp 186...).
 */
export const ROUTE_PROTO = 77;

interface IpRoute {
  dst?: string;
  gateway?: string;
  table?: string;
}

/**
 * Every route of ours, both families, in the main table.
 *
 * @example
 * await listOwnedRoutes(); // [{ dst: "10.244.2.0/24", via: "192.0.2.12" }]
 */
export async function listOwnedRoutes(): Promise<CurrentRoute[]> {
  // `table all` lists IPv4 and IPv6 in one call; ours only ever live in main.
  const out = await run([
    "ip",
    "-j",
    "route",
    "show",
    "table",
    "all",
    "proto",
    String(ROUTE_PROTO),
  ]);
  const routes = JSON.parse(out || "[]") as IpRoute[];
  return routes
    .filter((r) => (r.table === undefined || r.table === "main") && r.dst !== undefined)
    .map((r) => ({ dst: r.dst!, via: r.gateway }));
}

/** A batch line that failed, and what ip said. */
export interface BatchFailure {
  readonly line: string;
  readonly error: string;
}

/**
 * Runs `lines` as one `ip -force -batch -`: every line is tried even when one fails (a node
 * whose gateway is unreachable must not hold back the other 999), and the failures come back.
 */
export async function applyRouteBatch(lines: readonly string[]): Promise<BatchFailure[]> {
  if (lines.length === 0) return [];
  const out = await runOutput(["ip", "-force", "-batch", "-"], { stdin: lines.join("\n") + "\n" });
  if (out.code === 0) return [];
  // ip prints the kernel's complaint, then "Command failed -:<line number>".
  const failures: BatchFailure[] = [];
  let said: string[] = [];
  for (const text of out.stderr.split("\n")) {
    const m = /^Command failed -:(\d+)/.exec(text);
    if (m) {
      failures.push({ line: lines[Number(m[1]) - 1] ?? "", error: said.join("; ") || "failed" });
      said = [];
    } else if (text.trim() !== "") said.push(text.trim());
  }
  if (failures.length === 0) {
    failures.push({ line: "", error: `ip -batch exited ${out.code}: ${out.stderr.trim()}` });
  }
  return failures;
}

/** Deletes every route of ours, both families. Returns how many there were. */
export async function flushOwnedRoutes(): Promise<number> {
  const mine = await listOwnedRoutes();
  for (const family of ["-4", "-6"]) {
    await run(["ip", family, "route", "flush", "proto", String(ROUTE_PROTO)]);
  }
  return mine.length;
}

/**
 * MTU of the interface holding the default route (IPv4, else IPv6), or `fallback` when there is
 * none. Read with `ip`, which answers for this process's netns (/sys/class/net would not).
 */
export async function defaultRouteMtu(fallback = 1500): Promise<number> {
  for (const family of ["-4", "-6"]) {
    const routes = JSON.parse(await run(["ip", "-j", family, "route", "show", "default"]) || "[]");
    const dev = (routes as { dev?: string }[]).find((r) => r.dev)?.dev;
    if (dev === undefined) continue;
    const links = JSON.parse(await run(["ip", "-j", "link", "show", "dev", dev]) || "[]");
    const mtu = (links as { mtu?: number }[])[0]?.mtu;
    if (typeof mtu === "number") return mtu;
  }
  return fallback;
}
