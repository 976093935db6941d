// Checks on a CNI_NETNS path before we enter it: it exists, it is a namespace file, and it is
// not our own namespace (configuring the host as if it were a pod would break the node).
import { type FileId, fileId } from "../sys/file.ts";

const NETNS_DIR = /^\/(var\/)?run\/netns\/[^/]+$/;

/**
 * Why a path cannot be a pod's network namespace: `unusable` (missing, not a namespace, another
 * kind of namespace) or `own` (the caller's own namespace). The plugin maps these to CNI codes.
 */
export class NetnsError extends Error {
  constructor(readonly reason: "unusable" | "own", message: string) {
    super(message);
    this.name = "NetnsError";
  }
}

/** Throws a NetnsError naming CNI_NETNS when it cannot be a pod's network namespace. */
export function checkPodNetns(path: string): void {
  // stat through the FFI (lib/sys/file.ts): Deno.statSync would build Date objects, which
  // costs the plugin's ADD ~0.5 ms of V8 date set-up for two numbers it needs.
  let target: FileId | undefined, own: FileId | undefined;
  try {
    target = fileId(path);
  } catch (err) {
    throw new NetnsError("unusable", `Cannot open CNI_NETNS "${path}": ${(err as Error).message}`);
  }
  if (!target) {
    throw new NetnsError("unusable", `Cannot open CNI_NETNS "${path}": no such file`);
  }
  try {
    own = fileId("/proc/self/ns/net");
  } catch { /* below */ }
  if (!own) return; // no procfs to compare with: setns will judge the path when ADD enters it
  // Every namespace file (/proc/PID/ns/net or a bind mount of one) lives on nsfs.
  if (target.dev !== own.dev) {
    throw new NetnsError("unusable", `CNI_NETNS "${path}" is not a network namespace`);
  }
  if (target.ino === own.ino) {
    throw new NetnsError(
      "own",
      `CNI_NETNS "${path}" is the plugin's own network namespace`,
    );
  }
  // A mount or UTS namespace file is on nsfs too; caught here, it fails before IPAM is touched
  // instead of as setns' "Invalid argument" half-way through ADD. The
  // netns directories hold only network namespaces (iproute2's and every runtime's
  // convention), so the per-ADD cost of asking the kernel is paid only for other paths.
  if (NETNS_DIR.test(path)) return;
  const type = namespaceType(path, target.ino);
  if (type !== undefined && type !== "net") {
    throw new NetnsError(
      "unusable",
      `CNI_NETNS "${path}" is a ${type} namespace, not a network namespace`,
    );
  }
}

/**
 * The kind of a namespace file ("net", "mnt", ...): open it and find the fd whose
 * /proc/self/fd link reads "<kind>:[<inode>]" (no process, no ioctl). Undefined when unknown.
 */
function namespaceType(path: string, ino: bigint): string | undefined {
  // /proc/PID/ns/* are magic links whose target names the type.
  if (path.startsWith("/proc/")) {
    try {
      return /^([a-z_]+):\[/.exec(Deno.readLinkSync(path))?.[1];
    } catch { /* not a link: a bind mount under /proc, ask the fd table */ }
  }
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path);
  } catch {
    return undefined;
  }
  try {
    // The file just opened is almost always the highest fd: look there first.
    const fds = [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name)).sort((a, b) =>
      b - a
    );
    for (const fd of fds) {
      let link: string;
      try {
        link = Deno.readLinkSync(`/proc/self/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^([a-z_]+):\[([0-9]+)\]$/.exec(link);
      if (m && BigInt(m[2]) === ino) return m[1];
    }
    return undefined;
  } finally {
    file.close();
  }
}
