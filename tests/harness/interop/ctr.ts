// `ctr run --cni` against a node's containerd. ctr's own go-cni reads the fixed /etc/cni/net.d
// and /opt/cni/bin (and caches results in /var/lib/cni): a private mount namespace in the node's
// network namespace puts test dirs at those paths, so the real host's are never read or written.
import { type RunOutput, runOutput } from "../../../lib/process/run.ts";
import { tempMountNs } from "../mount_ns.ts";

/** Where ctr runs and what it should find at its hard-coded CNI paths. */
export interface CtrCniOptions {
  /** The node's network namespace (ctr runs there; so do the plugins it calls). */
  readonly netns: string;
  /** containerd's socket. */
  readonly socket: string;
  /** containerd namespace for the containers (ctr's CNI_CONTAINERID is `<namespace>-<id>`). */
  readonly namespace: string;
  /** Bound at /etc/cni/net.d: ctr loads the first conflist by name. */
  readonly confDir: string;
  /** Bound at /opt/cni/bin. */
  readonly binDir: string;
  /** An empty host dir the mount namespace uses for its overlay layers. */
  readonly scratch: string;
}

/** A `ctr` bound to one daemon and namespace, seeing the test's CNI dirs. */
export interface CtrCni extends AsyncDisposable {
  run(args: readonly string[]): Promise<RunOutput>;
}

/**
 * Sets up the mount namespace; `run` execs `ctr -a <socket> -n <namespace> ...args` inside it.
 *
 * @example
 * await using ctr = await ctrWithCni({ netns, socket, namespace: "mci", confDir, binDir, scratch });
 * await ctr.run(["run", "--rm", "--cni", image, "c1", "true"]);
 */
export async function ctrWithCni(o: CtrCniOptions): Promise<CtrCni> {
  await Deno.mkdir(o.scratch, { recursive: true });
  const mnt = await tempMountNs(o.netns, o.scratch);
  try {
    await mnt.bind(o.confDir, "/etc/cni/net.d", { readOnly: true });
    await mnt.bind(o.binDir, "/opt/cni/bin", { readOnly: true });
    // libcni's result cache (DEL's prevResult): kept inside, gone with the namespace.
    await mnt.tmpfs("/var/lib/cni");
  } catch (err) {
    await mnt[Symbol.asyncDispose]();
    throw err;
  }
  return {
    run: (args) => runOutput(mnt.exec(["ctr", "-a", o.socket, "-n", o.namespace, ...args])),
    [Symbol.asyncDispose]: () => mnt[Symbol.asyncDispose](),
  };
}
