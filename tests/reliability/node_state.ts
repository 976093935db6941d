// Snapshots of everything a plugin invocation could change on a test node: links, addresses,
// routes (every table, both families), iptables rules and the IPAM state dir. Two snapshots
// are compared as text, so a failure shows exactly what changed.
import { join } from "node:path";
import { runOutput } from "../../lib/process/run.ts";

/** One namespace's kernel state plus a state dir, normalised to stable text. */
export interface NodeState {
  readonly links: string;
  readonly addrs: string;
  readonly routes: string;
  readonly rules: string;
  readonly files: string;
}

/** Reads the state of the namespace at `netns` and the files under `stateDir`. */
export async function snapshot(netns: string, stateDir: string): Promise<NodeState> {
  const ns = (argv: string[]) => runOutput(["nsenter", `--net=${netns}`, "--", ...argv]);
  const json = async (argv: string[]) => JSON.parse((await ns(argv)).stdout || "[]");
  const links = (await json(["ip", "-j", "-d", "link", "show"])) as Record<string, unknown>[];
  const addrs = (await json(["ip", "-j", "addr", "show"])) as {
    ifname: string;
    addr_info?: { local: string; prefixlen: number }[];
  }[];
  const routes = [
    ...await json(["ip", "-j", "-4", "route", "show", "table", "all"]),
    ...await json(["ip", "-j", "-6", "route", "show", "table", "all"]),
  ] as Record<string, unknown>[];
  const rules = [
    (await ns(["iptables-save"])).stdout,
    (await ns(["ip6tables-save"])).stdout,
  ].join("\n").split("\n")
    .filter((l) => !l.startsWith("#"))
    .map((l) => l.replace(/\[\d+:\d+\]/g, "[]"))
    .join("\n");
  return {
    links: links.map((l) =>
      [l.ifname, l.link_type, l.address, l.mtu, l.master ?? "-", l.operstate, kind(l)].join(" ")
    ).sort().join("\n"),
    addrs: addrs.flatMap((a) =>
      (a.addr_info ?? []).map((i) => `${a.ifname} ${i.local}/${i.prefixlen}`)
    )
      .sort().join("\n"),
    routes: routes.map((r) =>
      [r.table ?? "main", r.type ?? "", r.dst, r.gateway ?? "", r.dev ?? "", r.protocol ?? ""]
        .join(" ")
    ).sort().join("\n"),
    rules,
    files: (await listFiles(stateDir)).join("\n"),
  };
}

/**
 * Waits for IPv6 DAD to finish (a link-local's local route appears only then), then until two
 * snapshots a little apart agree.
 */
export async function settledSnapshot(netns: string, stateDir: string): Promise<NodeState> {
  const tentative = ["nsenter", `--net=${netns}`, "--", "ip", "-6", "addr", "show", "tentative"];
  for (let i = 0; i < 50 && (await runOutput(tentative)).stdout.trim() !== ""; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  let prev = await snapshot(netns, stateDir);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 150));
    const next = await snapshot(netns, stateDir);
    if (diffState(prev, next) === "") return next;
    prev = next;
  }
  return prev;
}

/** "" when equal, else the changed parts, one "field: -before +after" line each. */
export function diffState(a: NodeState, b: NodeState): string {
  const out: string[] = [];
  for (const k of Object.keys(a) as (keyof NodeState)[]) {
    if (a[k] === b[k]) continue;
    const before = new Set(a[k].split("\n")), after = new Set(b[k].split("\n"));
    const gone = [...before].filter((l) => !after.has(l)).map((l) => `-${l}`);
    const came = [...after].filter((l) => !before.has(l)).map((l) => `+${l}`);
    out.push(`${k}: ${[...gone, ...came].join(" | ")}`);
  }
  return out.join("\n");
}

function kind(link: Record<string, unknown>): string {
  const info = link.linkinfo as { info_kind?: string } | undefined;
  return info?.info_kind ?? "";
}

/** Every file under `dir`, relative, with its content for small files ("" when `dir` is gone). */
async function listFiles(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(join(dir, rel))) {
      const path = join(rel, e.name);
      if (e.isDirectory) out.push(`${path}/`, ...await listFiles(dir, path));
      else {
        const text = await Deno.readTextFile(join(dir, path)).catch(() => "?");
        out.push(`${path} ${JSON.stringify(text.slice(0, 200))}`);
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}
