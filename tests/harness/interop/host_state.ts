// What a pod may leave on a node: IP allocations on disk, veths, iptables rules; and what a
// runtime may leave on the machine outside our temp dir (cgroup dirs, netns mounts, caches).
import { run, runOutput } from "../../../lib/process/run.ts";

const IP_NAME = /^(\d{1,3}\.){3}\d{1,3}$|^[0-9a-f]*:[0-9a-f:]+$/i;

/** Files named like an IP under `dir` (host-local's layout, and mycni's), as relative paths. */
export async function listAllocations(dir: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(d: string, rel: string) {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(d));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    for (const e of entries) {
      if (e.isDirectory) await walk(`${d}/${e.name}`, `${rel}${e.name}/`);
      else if (IP_NAME.test(e.name)) found.push(`${rel}${e.name}`);
    }
  }
  await walk(dir, "");
  return found.sort();
}

/** Names of the pod veths in a node namespace (its underlay `eth0` is a veth too: left out). */
export async function listVeths(netns: string): Promise<string[]> {
  const name = netns.split("/").at(-1)!;
  const out = await run(["ip", "-n", name, "-j", "link", "show", "type", "veth"]);
  return (JSON.parse(out || "[]") as { ifname: string }[]).map((l) => l.ifname)
    .filter((n) => n !== "eth0").sort();
}

// portmap's shared chains and their fixed rules stay after the last DEL (as with the reference):
// they are infrastructure, not a pod's leftovers.
const SHARED_RULE =
  /^:CNI-HOSTPORT-|-j CNI-HOSTPORT-(DNAT|SNAT|MASQ|SETMARK)\b|^-A CNI-HOSTPORT-(MASQ|SETMARK) /;

/** iptables (v4 and v6) rules and chains in `netns`, counters stripped, tables prefixed. */
export async function listRules(netns: string): Promise<string[]> {
  const lines: string[] = [];
  for (const tool of ["iptables-save", "ip6tables-save"]) {
    const out = await runOutput(["nsenter", `--net=${netns}`, "--", tool]);
    let table = "";
    for (const raw of out.stdout.split("\n")) {
      if (raw.startsWith("*")) table = raw.slice(1);
      if (!/^[:-]/.test(raw)) continue;
      const line = raw.replace(/ \[\d+:\d+\]$/, "");
      if (/^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) /.test(line)) continue;
      lines.push(`${tool.startsWith("ip6") ? "v6" : "v4"} ${table} ${line}`);
    }
  }
  return lines;
}

/** Rules present now that were not in `before`, less portmap's shared infrastructure. */
export function newRules(before: readonly string[], after: readonly string[]): string[] {
  const had = new Set(before);
  return after.filter((l) => !had.has(l) && !SHARED_RULE.test(l.split(" ").slice(2).join(" ")));
}

/** Where runtimes leave things outside their configured dirs (notes/real-runtimes.md). */
const WATCHED = [
  "/run/netns",
  "/var/run/netns",
  "/run/containerd",
  "/run/containers",
  "/run/libpod",
  "/run/runc",
  "/var/lib/cni",
  "/var/lib/cni/results",
  "/var/lib/containers",
  "/var/lib/containers/cache",
  "/etc/cni/net.d",
  // ctr's fixed plugin dir: the suite binds it only inside a private mount namespace
  "/opt/cni",
  "/opt/cni/bin",
];

async function childrenOf(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => `${dir}/${e.name}`);
  } catch {
    return [];
  }
}

/** The watched paths, their children and every top-level cgroup dir, as a set of paths. */
export async function snapshotHost(): Promise<Set<string>> {
  const paths = new Set<string>();
  const add = async (dir: string) => {
    try {
      await Deno.stat(dir);
      paths.add(dir);
    } catch {
      return;
    }
    for (const p of await childrenOf(dir)) paths.add(p);
  };
  for (const dir of WATCHED) await add(dir);
  for (const ctl of await childrenOf("/sys/fs/cgroup")) {
    for (const p of await childrenOf(ctl)) {
      if ((await Deno.lstat(p).catch(() => null))?.isDirectory) paths.add(p);
    }
  }
  return paths;
}

// Other suites may create namespaces (or cgroups) meanwhile: only names a runtime or this suite
// makes count as ours.
const OURS = /^(cni-|netns-|mci|k8s\.io$|libpod_parent$)/;
const RUNTIME_DIRS =
  /^\/(run\/(containerd|containers|libpod|runc)|var\/lib\/(cni|containers)|etc\/cni|opt\/cni)\b/;

/** Paths that exist now and did not in `before`, limited to what runtimes and this suite make. */
export async function hostLeftovers(before: ReadonlySet<string>): Promise<string[]> {
  return [...await snapshotHost()]
    .filter((p) => !before.has(p))
    .filter((p) => RUNTIME_DIRS.test(p) || OURS.test(p.split("/").at(-1)!))
    .sort();
}

/** Mount points at or under `prefix` (deepest first), from this mount namespace's table. */
export async function mountsUnder(prefix: string): Promise<string[]> {
  const table = await Deno.readTextFile("/proc/self/mountinfo");
  return table.split("\n").map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m === prefix || m.startsWith(`${prefix}/`))
    .sort((a, b) => b.length - a.length);
}

/**
 * Paths runtimes make for themselves at fixed places whatever their configured dirs (notes/
 * real-runtimes.md), and keep after their last container: the directories, while they hold no
 * file, and podman's image-metadata cache. A file anywhere else under them is a pod's state
 * (a libcni result cache entry, a shim socket, a runc state dir with its state.json).
 */
const SCAFFOLD_DIRS = new Set([
  "/run/netns",
  "/var/run/netns",
  "/run/containerd",
  "/run/containerd/s",
  "/run/containerd/runc",
  "/run/containerd/fifo",
  "/run/containers",
  "/run/libpod",
  "/run/runc",
  "/var/lib/cni",
  "/var/lib/cni/results",
  "/var/lib/containers",
  "/var/lib/containers/cache",
]);
const SCAFFOLD_FILES = /^\/var\/lib\/containers\/cache\/blob-info-cache-v\d+\.boltdb$/;

/** What the suite found on the machine after its runtimes were gone. */
export interface HostResidue {
  /** Runtime scaffolding (empty fixed dirs, our own cgroup parent with no process): expected. */
  readonly scaffolding: string[];
  /** Anything else: a pod, container or process something failed to remove. */
  readonly leftovers: string[];
}

/**
 * Sorts what exists now and did not `before` into expected runtime scaffolding and real
 * leftovers. `cgroupParent` (e.g. "/mci1a2") is the suite's own cgroup parent: runtimes leave
 * the parent dir, which is fine while no process lives below it.
 */
export async function inspectHost(
  before: ReadonlySet<string>,
  cgroupParent: string,
): Promise<HostResidue> {
  const scaffolding: string[] = [], leftovers: string[] = [];
  for (const path of await hostLeftovers(before)) {
    if (path.startsWith("/sys/fs/cgroup/") && path.endsWith(cgroupParent)) {
      const pids = await cgroupPids(path);
      if (pids.length) leftovers.push(`${path} (processes ${pids.join(" ")})`);
      else scaffolding.push(path);
    } else if (SCAFFOLD_DIRS.has(path)) {
      const files = await filesUnder(path);
      const stray = files.filter((f) => !SCAFFOLD_FILES.test(f));
      if (stray.length) leftovers.push(...stray);
      else scaffolding.push(path);
    } else if (SCAFFOLD_FILES.test(path)) {
      scaffolding.push(path);
    } else {
      leftovers.push(path);
    }
  }
  return { scaffolding, leftovers: [...new Set(leftovers)].sort() };
}

/** Waits until no process is left in cgroup `parent` (pids controller), at most `ms`. */
export async function waitCgroupEmpty(parent: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while ((await cgroupPids(`/sys/fs/cgroup/pids${parent}`)).length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every non-directory below `dir` (symlinks not followed). */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await Array.fromAsync(Deno.readDir(dir)).catch(() => [])) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await filesUnder(path));
    else out.push(path);
  }
  return out;
}

/** The pids in cgroup dir `dir` and below. */
async function cgroupPids(dir: string): Promise<string[]> {
  const procs = await Deno.readTextFile(`${dir}/cgroup.procs`).catch(() => "");
  const pids = procs.split("\n").filter((p) => p);
  for (const e of await Array.fromAsync(Deno.readDir(dir)).catch(() => [])) {
    if (e.isDirectory) pids.push(...await cgroupPids(`${dir}/${e.name}`));
  }
  return pids;
}

/**
 * Removes what runtimes left that did not exist `before`: unmounts netns bind mounts and
 * deletes empty cgroup dirs (deepest first) and runtime state dirs. Returns what it removed.
 */
export async function removeHostLeftovers(before: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const path of (await hostLeftovers(before)).reverse()) {
    if (path.startsWith("/sys/fs/cgroup/")) {
      await removeCgroupTree(path);
    } else {
      for (const m of await mountsUnder(path)) await runOutput(["umount", "-l", m]);
      await Deno.remove(path, { recursive: true }).catch(() => {});
    }
    removed.push(path);
  }
  return removed;
}

/** rmdir a cgroup dir and its children, deepest first (cgroupfs only removes empty groups). */
export async function removeCgroupTree(path: string): Promise<void> {
  for (const e of await Array.fromAsync(Deno.readDir(path)).catch(() => [])) {
    if (e.isDirectory) await removeCgroupTree(`${path}/${e.name}`);
  }
  await Deno.remove(path).catch(() => {});
}

/**
 * SIGKILLs every process in cgroup `parent` (a top-level name) and below, until it stays empty:
 * a killed conmon starts `podman container cleanup` in the same cgroup as it exits.
 */
export async function killCgroup(parent: string): Promise<void> {
  async function collect(dir: string, pids: Set<string>) {
    const procs = await Deno.readTextFile(`${dir}/cgroup.procs`).catch(() => "");
    for (const pid of procs.split("\n").filter((p) => p)) pids.add(pid);
    for (const e of await Array.fromAsync(Deno.readDir(dir)).catch(() => [])) {
      if (e.isDirectory) await collect(`${dir}/${e.name}`, pids);
    }
  }
  for (let round = 0; round < 20; round++) {
    const pids = new Set<string>();
    await collect(`/sys/fs/cgroup/pids${parent}`, pids);
    if (pids.size === 0) return;
    for (const pid of pids) await runOutput(["kill", "-KILL", pid]);
    await new Promise((r) => setTimeout(r, 250));
  }
}
