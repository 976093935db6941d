// Checks on a CNI_NETNS path before we enter it: it exists, it is a namespace file, and it is
// not our own namespace (configuring the host as if it were a pod would break the node).
import { CniError, ErrorCode } from "../cni/errors.ts";

/** Throws a CNI error naming CNI_NETNS when it cannot be a pod's network namespace. */
export function checkPodNetns(path: string): void {
  let target: Deno.FileInfo, own: Deno.FileInfo;
  try {
    target = Deno.statSync(path);
  } catch (err) {
    throw new CniError(
      ErrorCode.InvalidEnv,
      `Cannot open CNI_NETNS "${path}": ${(err as Error).message}`,
    );
  }
  try {
    own = Deno.statSync("/proc/self/ns/net");
  } catch {
    return; // no procfs to compare with: nsenter will judge the path
  }
  // Every namespace file (/proc/PID/ns/net or a bind mount of one) lives on nsfs.
  if (target.dev !== own.dev) {
    throw new CniError(ErrorCode.InvalidEnv, `CNI_NETNS "${path}" is not a network namespace`);
  }
  if (target.ino === own.ino) {
    throw new CniError(
      ErrorCode.InvalidNetns,
      `CNI_NETNS "${path}" is the plugin's own network namespace`,
    );
  }
}

/** Whether a netns path still exists (DEL after the runtime removed it, or after a reboot). */
export function netnsExists(path: string): boolean {
  if (path === "") return false;
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
