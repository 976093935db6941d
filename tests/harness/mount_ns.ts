// A private mount namespace joined to a test's network namespace: the view of the filesystem a
// container gets. Bind mounts made here (hostPath volumes, the service-account dir, the image's
// binaries) exist only inside it, so a program can be run at the exact paths a manifest names
// while nothing on the real host changes. The namespace lives as long as its processes: a
// holder (`sleep`) keeps it, and disposing kills the holder.
import { dirname, join } from "node:path";
import { run } from "../../lib/process/run.ts";

/** A private mount namespace, inside a network namespace. */
export interface TempMountNs extends AsyncDisposable {
  /** The holder process: `/proc/<pid>/ns/{mnt,net}` are the namespaces. */
  readonly pid: number;
  /** argv prefixed to run in this mount namespace and its network namespace. */
  exec(argv: readonly string[]): string[];
  /** Bind-mounts `src` (a host path) at `dst` (a path inside), creating the mount point. */
  bind(src: string, dst: string, opts?: { readOnly?: boolean }): Promise<void>;
  /** Mounts an empty tmpfs at `dst`, as a container has its own /run or /root. */
  tmpfs(dst: string): Promise<void>;
}

/**
 * Starts a holder in `netnsPath` with a private mount namespace; `scratch` (an empty host dir)
 * becomes a tmpfs inside it for overlay layers.
 *
 * A mount point that does not exist is made without touching the host: the nearest existing
 * directory above it gets an overlay whose upper layer lives in that tmpfs, and the missing
 * directories (or the file) are created in the overlay.
 *
 * @example
 * await using mnt = await tempMountNs(node.path, scratchDir);
 * await mnt.bind(join(host, "opt/cni/bin"), "/opt/cni/bin");
 */
export async function tempMountNs(netnsPath: string, scratch: string): Promise<TempMountNs> {
  const holder = new Deno.Command("nsenter", {
    args: [
      `--net=${netnsPath}`,
      "--",
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sleep",
      "infinity",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const pid = holder.pid;
  const kill = async () => {
    try {
      holder.kill("SIGKILL");
    } catch { /* already gone */ }
    await holder.status;
  };
  try {
    await waitForExec(pid, "sleep", holder.status);
    const inside = (
      argv: readonly string[],
    ) => ["nsenter", "-t", String(pid), "-m", "-n", "--", ...argv];
    // The host's view of a path inside the namespace: /proc/<pid>/root follows its mounts.
    const view = (path: string) => `/proc/${pid}/root${path}`;
    await run(inside(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "mcm-scratch", scratch]));
    const overlaid: string[] = [];
    let layers = 0;

    const ensureMountPoint = async (path: string, isDir: boolean) => {
      // Resolved inside: /var/run is a symlink to /run, and absolute links would lead the host's
      // view out of the namespace.
      const real = (await run(inside(["realpath", "-m", path]))).trim();
      let existing = real;
      while (!exists(view(existing))) existing = dirname(existing);
      if (existing === real) return;
      const covered = overlaid.some((d) => existing === d || existing.startsWith(`${d}/`));
      if (!covered) {
        if (existing === "/") throw new Error(`No place for a mount point at ${path}`);
        const layer = join(scratch, `layer${layers++}`);
        await Deno.mkdir(view(join(layer, "upper")), { recursive: true });
        await Deno.mkdir(view(join(layer, "work")));
        await run(inside([
          "mount",
          "-t",
          "overlay",
          "mcm-overlay",
          "-o",
          `lowerdir=${existing},upperdir=${layer}/upper,workdir=${layer}/work`,
          existing,
        ]));
        overlaid.push(existing);
      }
      await Deno.mkdir(view(isDir ? real : dirname(real)), { recursive: true });
      if (!isDir) await Deno.writeFile(view(real), new Uint8Array());
    };

    return {
      pid,
      exec: inside,
      async bind(src, dst, opts = {}) {
        await ensureMountPoint(dst, (await Deno.stat(src)).isDirectory);
        await run(inside(["mount", "--bind", src, dst]));
        if (opts.readOnly) await run(inside(["mount", "-o", "remount,bind,ro", dst]));
      },
      async tmpfs(dst) {
        await ensureMountPoint(dst, true);
        await run(inside(["mount", "-t", "tmpfs", "-o", "size=16m", "mcm-tmpfs", dst]));
      },
      [Symbol.asyncDispose]: kill,
    };
  } catch (err) {
    await kill();
    throw err;
  }
}

/** Whether `path` exists (a dangling link counts). */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `pid` runs `comm` (the holder has unshared and exec'd), or fails if it exits. */
async function waitForExec(pid: number, comm: string, status: Promise<Deno.CommandStatus>) {
  let exited = false;
  status.then(() => exited = true);
  const deadline = Date.now() + 5000;
  for (;;) {
    const now = await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "");
    if (now.trim() === comm) return;
    if (exited) throw new Error(`The mount namespace holder exited before running ${comm}`);
    if (Date.now() > deadline) throw new Error(`Timed out waiting for the holder to run ${comm}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
