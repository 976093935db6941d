// Builds and drives mcicnitool (cnitool.go), the libcni client that exercises CHECK through a
// chain. Built offline from Debian's golang-github-appc-cni-dev, in GOPATH mode.
import { run, type RunOutput, runOutput } from "../../../lib/process/run.ts";

const SOURCE = new URL("./cnitool.go", import.meta.url).pathname;

/**
 * Builds the driver into `dir` and returns its path (about 1 s with a warm cache).
 *
 * @example
 * const tool = await buildCnitool(tmp);
 */
export async function buildCnitool(dir: string): Promise<string> {
  const src = `${dir}/gopath/src/mcicnitool`;
  await Deno.mkdir(src, { recursive: true });
  await Deno.copyFile(SOURCE, `${src}/main.go`);
  const out = `${dir}/mcicnitool`;
  // GOPATH mode builds by import path (go 1.19 has no -C): src is $GOPATH/src/mcicnitool.
  await run(["go", "build", "-o", out, "mcicnitool"], {
    env: {
      GO111MODULE: "off",
      GOPATH: `${dir}/gopath:/usr/share/gocode`,
      GOCACHE: `${dir}/gocache`,
      GOFLAGS: "",
    },
  });
  return out;
}

/** Where and on what one libcni call runs. */
export interface CnitoolCall {
  /** The node namespace the "runtime" runs in. */
  readonly nodeNetns: string;
  readonly confDir: string;
  readonly binDir: string;
  readonly cacheDir: string;
  readonly network: string;
  readonly containerId: string;
  /** The pod namespace (CNI_NETNS). */
  readonly podNetns: string;
  /** runtimeConfig values for plugins that declare the capability. */
  readonly capArgs?: Readonly<Record<string, unknown>>;
}

/** Runs `add`, `check` or `del` and returns the output whatever the exit code. */
export function cnitool(
  tool: string,
  verb: "add" | "check" | "del",
  c: CnitoolCall,
): Promise<RunOutput> {
  return runOutput(["nsenter", `--net=${c.nodeNetns}`, "--", tool, verb, c.network, c.podNetns], {
    env: {
      NETCONFPATH: c.confDir,
      CNI_PATH: c.binDir,
      CNI_CACHE_DIR: c.cacheDir,
      CNI_CONTAINERID: c.containerId,
      CNI_IFNAME: "eth0",
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=mci;K8S_POD_NAME=${c.containerId}`,
      CAP_ARGS: c.capArgs ? JSON.stringify(c.capArgs) : "",
    },
  });
}
