// Runs the built plugin exactly as a runtime does: exec with CNI_* env and the config on stdin,
// from inside a test "node" namespace (never the root namespace: the plugin makes cni0 there).
import { fileURLToPath } from "node:url";
import { runOutput } from "../../lib/process/run.ts";
import { type TempNetns, tempNetns } from "./netns.ts";

/** The built plugin (make build / scripts/build.sh). */
export const PLUGIN = fileURLToPath(new URL("../../bin/mycni", import.meta.url));

/** What one invocation printed. */
export interface PluginRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed, or undefined when empty. */
  readonly json: Record<string, unknown> | undefined;
}

/** Env and stdin for one invocation. */
export interface Invocation {
  readonly command: string;
  readonly containerId?: string;
  readonly netns?: string;
  readonly ifname?: string;
  readonly args?: string;
  readonly path?: string;
  /** Config object (stringified) or raw stdin text. */
  readonly conf: Record<string, unknown> | string;
  /** Replace the whole CNI_* env (bad-input tests). */
  readonly env?: Record<string, string>;
}

/** Execs `bin/mycni` inside `nodeNetns`. */
export async function execPlugin(nodeNetns: string, inv: Invocation): Promise<PluginRun> {
  const env = inv.env ?? {
    CNI_COMMAND: inv.command,
    CNI_CONTAINERID: inv.containerId ?? "",
    CNI_NETNS: inv.netns ?? "",
    CNI_IFNAME: inv.ifname ?? "eth0",
    CNI_ARGS: inv.args ?? "",
    CNI_PATH: inv.path ?? "/usr/lib/cni",
  };
  const stdin = typeof inv.conf === "string" ? inv.conf : JSON.stringify(inv.conf);
  const out = await runOutput(["/usr/bin/nsenter", `--net=${nodeNetns}`, "--", PLUGIN], {
    stdin,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
  });
  let json: Record<string, unknown> | undefined;
  try {
    json = out.stdout.trim() ? JSON.parse(out.stdout) : undefined;
  } catch { /* left undefined: the test asserts on stdout */ }
  return { ...out, json };
}

/** A node namespace with a temp state dir, and pods made on it through the plugin. */
export interface TestNode extends AsyncDisposable {
  readonly netns: TempNetns;
  readonly dataDir: string;
  readonly logFile: string;
  /** A config for this node; `extra` overrides fields. */
  conf(extra?: Record<string, unknown>): Record<string, unknown>;
  /** A fresh pod namespace, removed with the node. */
  pod(): Promise<TempNetns>;
  /** Runs the plugin on this node. */
  exec(inv: Invocation): Promise<PluginRun>;
  /** A fresh pod with one successful ADD (the default config, eth0); throws if ADD fails. */
  addedPod(containerId: string): Promise<{ pod: TempNetns; add: PluginRun }>;
  /** Files in the network's IPAM dir that are IP reservations. */
  allocations(network?: string): Promise<string[]>;
  /** Names of links in the node namespace. */
  links(): Promise<string[]>;
}

/** Creates a node namespace; everything it made is removed on dispose. */
export async function testNode(opts: { podCIDRs?: string[] } = {}): Promise<TestNode> {
  const netns = await tempNetns("mcpn");
  const dir = await Deno.makeTempDir({ prefix: "mycni-test-" });
  const pods: TempNetns[] = [];
  const dataDir = `${dir}/ipam`, logFile = `${dir}/mycni.log`;
  const podCIDRs = opts.podCIDRs ?? ["10.250.1.0/24", "fd00:250:1::/64"];
  const node: TestNode = {
    netns,
    dataDir,
    logFile,
    conf: (extra = {}) => ({
      cniVersion: "1.1.0",
      name: "testnet",
      type: "mycni",
      podCIDRs,
      dataDir,
      logFile,
      mtu: 1500,
      ...extra,
    }),
    async pod() {
      const p = await tempNetns("mcpp");
      pods.push(p);
      return p;
    },
    exec: (inv) => execPlugin(netns.path, inv),
    async addedPod(containerId) {
      const pod = await node.pod();
      const add = await node.exec({
        command: "ADD",
        containerId,
        netns: pod.path,
        conf: node.conf(),
      });
      if (add.code !== 0) throw new Error(`ADD ${containerId} failed: ${add.stdout} ${add.stderr}`);
      return { pod, add };
    },
    async allocations(network = "testnet") {
      const out: string[] = [];
      try {
        for await (const e of Deno.readDir(`${dataDir}/${network}`)) {
          if (e.isFile && /^[0-9a-f.:]+$/.test(e.name) && /[.:]/.test(e.name)) out.push(e.name);
        }
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      return out.sort();
    },
    async links() {
      const out = await runOutput(netns.exec(["ip", "-j", "link", "show"]));
      return (JSON.parse(out.stdout || "[]") as { ifname: string }[]).map((l) => l.ifname);
    },
    async [Symbol.asyncDispose]() {
      for (const p of pods) await p[Symbol.asyncDispose]();
      await netns[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  return node;
}

/** The pod addresses an ADD result reports. */
export function resultIps(run: PluginRun): string[] {
  return ((run.json?.ips ?? []) as { address: string }[]).map((i) => i.address);
}

/** The address without its prefix. */
export function bare(address: string): string {
  return address.replace(/\/[0-9]+$/, "");
}
