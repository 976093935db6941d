// Shared helpers for tests running the built agent (bin/mycni-init) in a node namespace.
import { join } from "node:path";
import { readLines } from "../../lib/kube/watch.ts";
import { ROUTE_PROTO } from "../../lib/net/route.ts";
import { run, runOutput } from "../../lib/process/run.ts";
import { type TempNetns, tempNetns } from "./netns.ts";

/** The repository root. */
export const ROOT: string = new URL("../..", import.meta.url).pathname;
/** The built agent. */
export const AGENT: string = join(ROOT, "bin/mycni-init");
/** The pinned deno, to run harness programs (the fake API server) in a namespace. */
export const DENO: string = join(ROOT, "tools/bin/deno");

/**
 * The plugin the agent installs in these tests: it answers VERSION as the real one does (the
 * agent runs the installed plugin once to know it works), and nothing else.
 */
export const STAND_IN_PLUGIN = `#!/bin/sh
# stand-in plugin
echo '{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}'
`;

/** Options for {@linkcode makeAgentNode}. */
export interface AgentNodeOptions {
  /** Written to `<dir>/nodes.json` before the agent starts. */
  readonly nodes: readonly unknown[];
  /** Namespace name prefix; the scratch dir is `<prefix>-agent-*`. */
  readonly prefix?: string;
  /** The underlay's MTU (the veth's default when unset). */
  readonly mtu?: number;
  /** Also give the underlay 2001:db8::11/64. */
  readonly ipv6?: boolean;
  /** Add 10.99.0.0/24 via 192.0.2.99 proto static: a route the agent must never touch. */
  readonly foreignRoute?: boolean;
  /** Put an executable stand-in `portmap` in `<dir>/bin`, as a node's CNI bin dir has. */
  readonly portmapStub?: boolean;
}

/** A node namespace and its scratch dir (bin/, plugin, nodes.json), both removed on dispose. */
export interface AgentNode extends AsyncDisposable {
  readonly ns: TempNetns;
  readonly dir: string;
}

/**
 * A node "n1": an underlay veth u0 (peer u1) with 192.0.2.11/24, a default route via 192.0.2.1,
 * and a scratch dir holding `bin/`, a stand-in plugin source and `nodes.json`.
 *
 * @example
 * await using node = await makeAgentNode({ nodes: NODES, prefix: "mca", ipv6: true });
 */
export async function makeAgentNode(opts: AgentNodeOptions): Promise<AgentNode> {
  const prefix = opts.prefix ?? "mca";
  const ns = await tempNetns(prefix);
  const dir = await Deno.makeTempDir({ prefix: `${prefix}-agent-` });
  const x = (argv: string[]) => run(ns.exec(argv));
  const mtu = opts.mtu === undefined ? [] : ["mtu", String(opts.mtu)];
  await x(["ip", "link", "add", "u0", ...mtu, "type", "veth", "peer", "name", "u1"]);
  await x(["ip", "link", "set", "u1", "up"]);
  await x(["ip", "link", "set", "u0", "up"]);
  await x(["ip", "addr", "add", "192.0.2.11/24", "dev", "u0"]);
  if (opts.ipv6) await x(["ip", "addr", "add", "2001:db8::11/64", "dev", "u0", "nodad"]);
  await x(["ip", "route", "add", "default", "via", "192.0.2.1"]);
  if (opts.foreignRoute) {
    await x(["ip", "route", "add", "10.99.0.0/24", "via", "192.0.2.99", "proto", "static"]);
  }
  await Deno.mkdir(join(dir, "bin"));
  if (opts.portmapStub) {
    await Deno.writeTextFile(join(dir, "bin", "portmap"), "#!/bin/true\n", { mode: 0o755 });
  }
  await Deno.writeTextFile(join(dir, "plugin"), STAND_IN_PLUGIN);
  await writeNodes(dir, opts.nodes);
  return {
    ns,
    dir,
    async [Symbol.asyncDispose]() {
      await ns[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Replaces `<dir>/nodes.json` atomically (temp file + rename), as the agent's file watch expects.
 *
 * @example
 * await writeNodes(node.dir, NODES.filter((n) => n.name !== "n2"));
 */
export async function writeNodes(dir: string, nodes: readonly unknown[]): Promise<void> {
  await Deno.writeTextFile(join(dir, ".nodes.tmp"), JSON.stringify(nodes));
  await Deno.rename(join(dir, ".nodes.tmp"), join(dir, "nodes.json"));
}

/**
 * The agent's argv as node "n1" with every path under `dir`, then `source` (the nodes source and
 * any other flags).
 *
 * @example
 * await run(ns.exec(agentArgv(dir, ["--nodes-file", join(dir, "nodes.json"), "--once"])));
 */
export function agentArgv(
  dir: string,
  source: readonly string[],
  opts: { readonly pluginSrc?: string } = {},
): string[] {
  return [
    AGENT,
    "--node-name",
    "n1",
    "--cni-bin-dir",
    join(dir, "bin"),
    "--cni-conf-dir",
    join(dir, "conf"),
    "--cni-data-dir",
    join(dir, "data"),
    "--log-file",
    join(dir, "mycni.log"),
    "--plugin-src",
    opts.pluginSrc ?? join(dir, "plugin"),
    // Its own: the default (/run/mycni) is the host's, which other tests' agents share.
    "--agent-socket",
    join(dir, "agent.sock"),
    ...source,
  ];
}

/**
 * The agent's `--uninstall` argv for the paths {@linkcode agentArgv} installs into.
 *
 * @example
 * await run(ns.exec(uninstallArgv(dir)));
 */
export function uninstallArgv(dir: string): string[] {
  return [
    AGENT,
    "--uninstall",
    "--cni-bin-dir",
    join(dir, "bin"),
    "--cni-conf-dir",
    join(dir, "conf"),
  ];
}

/**
 * The agent's routes (proto {@linkcode ROUTE_PROTO}, both families) in `ns` as sorted
 * "dst via gateway" lines.
 *
 * @example
 * assertEquals(await ourRoutes(ns), ["10.244.2.0/24 via 192.0.2.12"]);
 */
export async function ourRoutes(ns: TempNetns): Promise<string[]> {
  // `table all` lists IPv4 and IPv6 in one call.
  const out = await run(
    ns.exec(["ip", "-j", "route", "show", "table", "all", "proto", String(ROUTE_PROTO)]),
  );
  return (JSON.parse(out || "[]") as { dst: string; gateway: string }[])
    .map((r) => `${r.dst} via ${r.gateway}`).sort();
}

/** Options for {@linkcode curl}. */
export interface CurlOptions {
  readonly method?: string;
  /** Sent as application/json. */
  readonly body?: string;
  /** More curl flags, e.g. `["--cacert", ca]`. */
  readonly args?: readonly string[];
}

/**
 * An HTTP request with curl from inside `ns` (2 s limit); code 0 when nothing answered.
 *
 * @example
 * (await curl(ns, `${api}/_test/nodes/n4`, { method: "PUT", body: JSON.stringify(n4) })).code;
 */
export async function curl(
  ns: TempNetns,
  url: string,
  opts: CurlOptions = {},
): Promise<{ code: number; text: string }> {
  const data = opts.body === undefined
    ? []
    : ["-H", "content-type: application/json", "--data-binary", opts.body];
  const out = await runOutput(
    ns.exec([
      "curl",
      "-s",
      "-m",
      "2",
      ...opts.args ?? [],
      "-X",
      opts.method ?? "GET",
      ...data,
      "-w",
      "\n%{http_code}",
      url,
    ]),
  );
  const i = out.stdout.lastIndexOf("\n");
  return { code: Number(out.stdout.slice(i + 1)), text: out.stdout.slice(0, i) };
}

/** Options for {@linkcode waitFor}. */
export interface WaitOptions {
  /** Give up after this long (default 5000 ms). */
  readonly ms?: number;
  /** Give up as soon as this process exits, with its first stderr lines. */
  readonly proc?: { readonly ended: boolean; readonly logs: readonly string[] };
}

/**
 * Polls `cond` every 100 ms until it holds; throws naming `what` at the deadline.
 *
 * @example
 * await waitFor("healthz 200", async () => (await curl(ns, healthz)).code === 200, { ms: 8000 });
 */
export async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  opts: WaitOptions = {},
): Promise<void> {
  const ms = opts.ms ?? 5000;
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    // The first lines say why a process gave up (a usage error is followed by the usage text).
    if (opts.proc?.ended) {
      throw new Error(
        `Exited while waiting for ${what}:\n${opts.proc.logs.slice(0, 3).join("\n")}`,
      );
    }
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Options for {@linkcode spawnLogged}. */
export interface SpawnOptions {
  /** The whole environment (nothing inherited); the caller's when unset. */
  readonly env?: Record<string, string>;
  /** Called with each stderr line as it arrives (it is also kept in `logs`). */
  readonly onLine?: (line: string) => void;
}

/** A background process whose stderr lines are collected; stopped on dispose. */
export interface Spawned extends AsyncDisposable {
  readonly pid: number;
  /** stderr, one entry a line, as read so far. */
  readonly logs: string[];
  /** Whether the process has exited. */
  readonly ended: boolean;
  /** The exit code, once the process ends by itself and its stderr is read. */
  readonly exited: Promise<number>;
  /** Sends `signal` (once; later calls wait for the same exit) and returns the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/**
 * Starts `argv` in the background, stdout dropped, stderr collected line by line.
 *
 * @example
 * await using agent = spawnLogged(mnt.exec(argv), { env });
 */
export function spawnLogged(argv: readonly string[], opts: SpawnOptions = {}): Spawned {
  const [cmd, ...args] = argv;
  const child = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    ...(opts.env ? { env: opts.env, clearEnv: true } : {}),
  }).spawn();
  const logs: string[] = [];
  const reading = (async () => {
    for await (const line of readLines(child.stderr)) {
      logs.push(line);
      opts.onLine?.(line);
    }
  })();
  let ended = false;
  child.status.then(() => ended = true);
  let stopped: Promise<number> | undefined;
  const stop = (signal: Deno.Signal = "SIGTERM") =>
    stopped ??= (async () => {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
      const { code } = await child.status;
      await reading;
      return code;
    })();
  return {
    pid: child.pid,
    logs,
    get ended() {
      return ended;
    },
    get exited() {
      return Promise.all([child.status, reading]).then(([s]) => s.code);
    },
    stop,
    [Symbol.asyncDispose]: async () => void await stop(),
  };
}

/**
 * {@linkcode spawnLogged} inside `ns`.
 *
 * @example
 * await using agent = spawnIn(ns, agentArgv(dir, ["--kube-api", api]));
 * assertEquals(await agent.stop(), 0);
 */
export function spawnIn(ns: TempNetns, argv: readonly string[], opts: SpawnOptions = {}): Spawned {
  return spawnLogged(ns.exec(argv), opts);
}

/** Options for {@linkcode fakeApiServer}. */
export interface FakeApiServerProcessOptions {
  /** host:port to listen on (default 127.0.0.1:6443). */
  readonly listen?: string;
  /** Seed the nodes from this file. */
  readonly nodesFile?: string;
  /** Serve HTTPS with this certificate and key. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Require `Authorization: Bearer <the token in this file>` on API requests. */
  readonly tokenFile?: string;
}

/**
 * tests/harness/fake_apiserver.ts as its own process inside `ns`.
 *
 * @example
 * await using server = fakeApiServer(ns, { nodesFile: join(dir, "nodes.json") });
 */
export function fakeApiServer(ns: TempNetns, opts: FakeApiServerProcessOptions = {}): Spawned {
  return spawnIn(ns, [
    DENO,
    "run",
    "-A",
    "--no-lock",
    join(ROOT, "tests/harness/fake_apiserver.ts"),
    "--listen",
    opts.listen ?? "127.0.0.1:6443",
    ...opts.nodesFile === undefined ? [] : ["--nodes-file", opts.nodesFile],
    ...opts.tls === undefined ? [] : ["--cert", opts.tls.cert, "--key", opts.tls.key],
    ...opts.tokenFile === undefined ? [] : ["--token-file", opts.tokenFile],
  ]);
}
