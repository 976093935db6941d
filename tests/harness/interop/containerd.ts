// One containerd (CRI plugin) per simulated node, run inside the node's network namespace with
// its own root, state and socket under the test's temp dir. Config per notes/real-runtimes.md.
import { run, runOutput } from "../../../lib/process/run.ts";
import { type CriClient, criConnect } from "./cri_client.ts";
import { mountsUnder } from "./host_state.ts";

/** A running containerd and a CRI client connected to it. */
export interface ContainerdNode extends AsyncDisposable {
  readonly socket: string;
  readonly cri: CriClient;
  readonly pid: number;
  /** `ctr` argv prefix for this daemon, in the CRI's `k8s.io` namespace. */
  readonly ctr: readonly string[];
}

/** Where a node's containerd lives and which CNI dirs and images it uses. */
export interface ContainerdOptions {
  readonly dir: string;
  readonly netns: string;
  readonly cniBinDir: string;
  readonly cniConfDir: string;
  /** Sandbox ("pause") image reference, already built. */
  readonly sandboxImage: string;
  readonly images: readonly string[];
}

function config(o: ContainerdOptions): string {
  const q = JSON.stringify;
  return `version = 2
root = ${q(`${o.dir}/root`)}
state = ${q(`${o.dir}/state`)}
[grpc]
  address = ${q(`${o.dir}/containerd.sock`)}
[ttrpc]
  address = ${q(`${o.dir}/containerd.sock.ttrpc`)}
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = ${q(`${o.dir}/opt`)}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(o.sandboxImage)}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # no CAP_SYS_RESOURCE here: runc cannot set the sandbox's oom_score_adj -998
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${q(o.cniBinDir)}
    conf_dir = ${q(o.cniConfDir)}
    max_conf_num = 1
`;
}

/** PIDs of processes whose command line contains `needle` (shims name their daemon's socket). */
async function pidsWithArg(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    if (cmd.split("\0").includes(needle)) pids.push(Number(e.name));
  }
  return pids;
}

/**
 * Polls `probe` every 100 ms until it is true, for at most `ms`; a probe's error is retried (and
 * named if time runs out). `opts.fatal()` returning a reason ends the wait at once: a daemon that
 * exited will not come up, and waiting out the bound would only hide why.
 */
async function waitFor(
  what: string,
  ms: number,
  probe: () => Promise<boolean>,
  opts: { fatal?: () => string | undefined } = {},
): Promise<void> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    const fatal = opts.fatal?.();
    if (fatal) throw new Error(`Gave up waiting for ${what}: ${fatal}`);
    try {
      if (await probe()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/**
 * How long a containerd may take to serve CRI. A bound, not an expectation: one boots in ~1 s
 * here (its log says "successfully booted in 0.03s"), but the second of two, started while other
 * suites loaded the 2-core machine, did not answer within 20 s in a CI run.
 */
const CRI_START_MS = 90_000;

/** The last `n` lines of `path`, for an error message; says so when it cannot be read. */
async function tail(path: string, n: number): Promise<string> {
  try {
    const lines = (await Deno.readTextFile(path)).trimEnd().split("\n");
    return lines.slice(-n).join("\n") || "(empty)";
  } catch (err) {
    return `(cannot read it: ${(err as Error).message})`;
  }
}

/**
 * Starts containerd in `netns`, waits for CRI, imports the images into `k8s.io`. Disposing
 * removes every pod sandbox, stops the daemon by PID, kills stray shims and unmounts leftovers.
 */
export async function startContainerd(o: ContainerdOptions): Promise<ContainerdNode> {
  await Deno.mkdir(o.dir, { recursive: true });
  await Deno.writeTextFile(`${o.dir}/config.toml`, config(o));
  const socket = `${o.dir}/containerd.sock`;
  const log = await Deno.open(`${o.dir}/containerd.log`, {
    write: true,
    create: true,
    append: true,
  });
  // nsenter execs containerd (no --fork for a net ns), so the child PID is the daemon's.
  const child = new Deno.Command("nsenter", {
    args: [`--net=${o.netns}`, "--", "containerd", "--config", `${o.dir}/config.toml`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    cwd: o.dir,
  }).spawn();
  const logged = child.stderr.pipeTo(log.writable).catch(() => {});
  const cri = criConnect(socket);
  const ctr = ["ctr", "-a", socket, "-n", "k8s.io"];
  const node: ContainerdNode = {
    socket,
    cri,
    pid: child.pid,
    ctr,
    async [Symbol.asyncDispose]() {
      const pods = await cri.call("ListPodSandbox", {}, 10_000).catch(() => ({ items: [] }));
      for (const p of pods.items ?? []) {
        await cri.call("StopPodSandbox", { pod_sandbox_id: p.id }, 30_000).catch(() => {});
        await cri.call("RemovePodSandbox", { pod_sandbox_id: p.id }, 30_000).catch(() => {});
      }
      cri.close();
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      const exited = await Promise.race([
        child.status.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
      ]);
      if (!exited) child.kill("SIGKILL");
      await child.status;
      await logged;
      for (const pid of await pidsWithArg(socket)) {
        await runOutput(["kill", "-KILL", String(pid)]);
      }
      for (const m of await mountsUnder(o.dir)) await runOutput(["umount", "-l", m]);
    },
  };
  const started = Date.now();
  try {
    let exited: Deno.CommandStatus | undefined;
    child.status.then((s) => exited = s);
    await waitFor(`containerd CRI on ${socket}`, CRI_START_MS, async () => {
      await cri.call("Version", {}, 2_000);
      return true;
    }, {
      fatal: () =>
        exited &&
        `containerd exited with code ${exited.code}${exited.signal ? ` (${exited.signal})` : ""}`,
    });
    for (const tar of o.images) await run([...ctr, "images", "import", tar]);
  } catch (err) {
    // Stopped first, so that its log is complete when we read it.
    await node[Symbol.asyncDispose]();
    const logFile = `${o.dir}/containerd.log`;
    throw new Error(
      `${(err as Error).message} (${
        Date.now() - started
      } ms after the start; ${logFile}, last 20 lines:\n` +
        `${await tail(logFile, 20)})`,
    );
  }
  return node;
}

/** Waits until CRI reports NetworkReady (a valid conflist in conf_dir was loaded). */
export async function waitNetworkReady(cri: CriClient): Promise<void> {
  await waitFor("CRI NetworkReady", 15_000, async () => {
    const res = await cri.call("Status", {}, 5_000);
    return (res.status?.conditions ?? []).some((c: { type: string; status: boolean }) =>
      c.type === "NetworkReady" && c.status
    );
  });
}

export { waitFor };
