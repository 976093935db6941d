// Plugin ADD/DEL latency against DESIGN.md's limit for a Deno plugin, beside the reference
// bridge + host-local. The limit is what no Deno plugin that speaks rtnetlink can avoid:
//   floor        a Deno process started exactly as bin/mycni is (same interpreter line and
//                flags; for a `deno compile` build, a compiled program) that reads stdin,
//                prints a result and exits;
//   kernel share a fixed sequence of rtnetlink requests that any bridge plugin's ADD must send
//                for a pod on a node whose bridge exists (kernelAdd() lists them), and the one
//                a DEL must send (the veth delete), timed inside one warm process in the node
//                netns, so no process start and no module loading is counted.
// limit = median floor + median kernel share. Everything the plugin pays beyond that (module
// evaluation, FFI set-up, IPAM files, parsing, the log line, and any request it sends beyond the
// fixed sequence) is its own cost, and the ratio mycni / limit is the figure with a target
// (<= 1.10). All columns, the burst included, are interleaved in one run so machine noise hits
// them alike. Prints medians and ratios.
//
// With admission (DESIGN.md "Pod lifecycle"): the same plugin with `agentSocket`, asking an agent
// in the node netns (the admission server, the admission and the real table step over the real
// table sync: the agent's own code, without its informers, fed a small world: a deny-all policy
// in the pods' namespace and their Pod objects, as the kubelet creates them before ADD). Its
// limit adds the admission's element batch (a self element and a map element, one nfnetlink
// batch, timed in the warm worker) to the kernel share; target <= 1.20. The burst runs with and
// without admission too (target: with >= 0.9x without).
//   make bench   (or: deno run -A --no-lock bench/plugin_latency.ts [--pods 30] [--rounds 3])
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { STORE_CODE_CACHE } from "../lib/cni/env.ts";
import { Rtnl } from "../lib/net/netlink.ts";
import {
  addrAdd,
  linkAddVeth,
  linkDel,
  linkGet,
  linkSet,
  linkSetHairpin,
} from "../lib/net/rtnl.ts";
import { routeAdd } from "../lib/net/route.ts";
import { run, runOutput } from "../lib/process/run.ts";
import { parseCidr } from "../lib/ip/cidr.ts";
import { parseNetworkPolicy } from "../lib/kube/network_policy.ts";
import { createLogger } from "../lib/log/logger.ts";
import { deleteConntrackEntries } from "../lib/net/conntrack.ts";
import { applyElementChanges } from "../lib/nft/elements.ts";
import { createTableSync } from "../lib/nft/sync.ts";
import { createAdmission } from "../lib/node/admission.ts";
import { serveAdmission } from "../lib/node/admission_server.ts";
import { createScheduler } from "../lib/node/scheduler.ts";
import { createTableStep } from "../lib/node/table_step.ts";
import { type TempNetns, tempNetns } from "../tests/harness/netns.ts";
import { median, quantile } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    pods: { type: "string", default: "30" },
    rounds: { type: "string", default: "3" },
    "kernel-worker": { type: "boolean", default: false },
    "agent-worker": { type: "string" },
  },
});
const PLUGIN = fileURLToPath(new URL("../bin/mycni", import.meta.url));
const REF = "/usr/lib/cni/bridge";
const TARGET = 1.10, ADMIT_TARGET = 1.20, BURST_TARGET = 0.9;
// One node-side setting for every column: the same bridge, podCIDR, MTU and hairpin.
const BRIDGE = "mycni0", POD_CIDR = "10.252.0.0/16", MTU = 1500;
// The admitting columns' pods (sequential, burst): the agent's node has these podCIDRs.
const ADMIT_CIDR = "10.248.0.0/16", BURST_ADMIT_CIDR = "10.247.0.0/16";
/** The Kubernetes namespace of the admitted pods (a deny-all policy isolates them). */
const ADMIT_NS = "bench";

if (values["kernel-worker"]) await kernelWorker();
else if (values["agent-worker"]) await agentWorker(values["agent-worker"]);
else await main(Number(values.pods), Number(values.rounds));

async function main(n: number, rounds: number): Promise<void> {
  await using node = await tempNetns("mcbn");
  const dir = await Deno.makeTempDir({ prefix: "mycni-bench-" });
  // Each column wires its own pods (each sets the pod's default route); pod n is the warm-up.
  const pods: Pods = { mycni: [], reference: [], kernel: [], admit: [] };
  let worker: KernelWorker | undefined;
  let agent: AgentWorker | undefined;
  try {
    for (const set of Object.values(pods)) {
      for (let i = 0; i < n + 1; i++) set.push(await tempNetns("mcbp"));
    }
    const floor = await floorExecutable(dir);
    // As the agent does after installing the plugin: VERSION with STORE_CODE_CACHE, which makes
    // Deno store the plugin's V8 code cache (mycni.ts says why), so no measured run compiles it
    // from source.
    await execIn(node)([PLUGIN], '{"cniVersion":"1.0.0"}', {
      CNI_COMMAND: "VERSION",
      [STORE_CODE_CACHE]: "1",
    });
    worker = startKernelWorker(node);
    agent = await startAgentWorker(node, `${dir}/agent.sock`, n + 1);
    const cols = await sequential({ dir, node, pods, floor, worker });
    report(n, cols, await stepMedians(`${dir}/mycni.log`, `m${n}`));
    console.log(`with admission, own log: ${await agentStats(`${dir}/admit.log`, `a${n}`)}`);
    await burst({ dir, node, floor, rounds });
    await firstPod(dir);
    await version(node, floor, n);
  } finally {
    await worker?.close();
    await agent?.close();
    for (const p of Object.values(pods).flat()) await p[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The floor program, launched as bin/mycni is: for a bundle, an executable script with the
 * plugin's own interpreter line; for a compiled plugin, the same script through `deno compile`
 * with the flags scripts/build.sh gives the plugin.
 */
async function floorExecutable(dir: string): Promise<string> {
  // Deno.exit() is the quickest way out of a small script (no runtime teardown), as the plugin
  // leaves; a plain read loop, as the plugin reads stdin.
  const js = [
    "const buf = new Uint8Array(65536); let s = 0;",
    "for (let n = Deno.stdin.readSync(buf); n !== null; n = Deno.stdin.readSync(buf)) s += n;",
    'console.log(JSON.stringify({ cniVersion: "1.0.0", n: s }));',
    "Deno.exit(0);",
  ].join("\n");
  const head = new Uint8Array(2);
  using f = await Deno.open(PLUGIN);
  await f.read(head);
  const path = `${dir}/floor`;
  if (head[0] === 0x23 && head[1] === 0x21) { // "#!": a bundled script
    const shebang = (await Deno.readTextFile(PLUGIN)).split("\n", 1)[0];
    await Deno.writeTextFile(path, `${shebang}\n${js}\n`, { mode: 0o755 });
    return path;
  }
  await Deno.writeTextFile(`${path}.js`, js);
  const out = await runOutput([
    Deno.execPath(),
    "compile",
    "--quiet",
    "--no-check",
    "--no-config",
    "--allow-all",
    "--output",
    path,
    `${path}.js`,
  ]);
  if (out.code !== 0) {
    throw new Error(`bin/mycni is compiled but the floor cannot be: ${out.stderr.trim()}`);
  }
  return path;
}

// ---- the kernel's share: one warm process in the node netns --------------------------------

/** The running kernel worker: each call returns the milliseconds the worker measured. */
interface KernelWorker {
  add(netns: string, i: number): Promise<number>;
  del(i: number): Promise<number>;
  /** The admission's element batch for pod i (and its removal, untimed by the caller). */
  batch(i: number, op: "add" | "delete"): Promise<number>;
  close(): Promise<void>;
}

/** Starts this file with --kernel-worker inside the node netns, speaking one line per request. */
function startKernelWorker(node: TempNetns): KernelWorker {
  const child = new Deno.Command("nsenter", {
    args: [
      `--net=${node.path}`,
      "--",
      Deno.execPath(),
      "run",
      "--allow-all",
      "--no-lock",
      fileURLToPath(import.meta.url),
      "--kernel-worker",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines())
    .getReader();
  const ask = async (request: string) => {
    await writer.write(new TextEncoder().encode(request + "\n"));
    const { value } = await lines.read();
    const ms = Number(value);
    if (!value || !Number.isFinite(ms)) throw new Error(`kernel worker: ${request}: ${value}`);
    return ms;
  };
  return {
    add: (netns, i) => ask(`ADD ${i} ${netns}`),
    del: (i) => ask(`DEL ${i}`),
    batch: (i, op) => ask(`${op === "add" ? "BATCH" : "UNBATCH"} ${i}`),
    async close() {
      await writer.close().catch(() => {});
      await child.status;
    },
  };
}

function splitLines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, out) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) out.enqueue(p);
    },
  });
}

/**
 * The worker (run in the node netns): for `ADD i netns` it sends kernelAdd()'s requests for pod
 * i and prints the milliseconds; for `DEL i`, kernelDel()'s. The first requests warm it up; the
 * caller discards them.
 */
async function kernelWorker(): Promise<void> {
  // The admission batch's table: the agent's set and map shapes, and its drop-only chain.
  await run(["nft", "-f", "-"], {
    stdin: "table inet mcbench {\n  set self4 { type ipv4_addr . ipv4_addr; }\n" +
      "  chain ing_isolated { counter drop; }\n  map ingress4 { type ipv4_addr : verdict; }\n}\n",
  });
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines());
  const out = (text: string) => Deno.stdout.writeSync(new TextEncoder().encode(text + "\n"));
  for await (const line of lines) {
    const [verb, index, netns] = line.split(" ");
    const i = Number(index);
    try {
      const t = performance.now();
      if (verb === "ADD") kernelAdd(netns, i);
      else if (verb === "BATCH") kernelBatch(i, "add");
      else if (verb === "UNBATCH") kernelBatch(i, "delete");
      else kernelDel(i);
      out(String(performance.now() - t));
    } catch (err) {
      out(`error: ${(err as Error).message}`);
    }
  }
}

// Why a fixed sequence and not the plugin's own wiring (lib/plugin/add.ts wirePod()), nor the
// reference's: timing mycni's own function made the limit grow with every request mycni chose
// to add, so a slower wirePod() raised its own limit; the reference is a Go process whose kernel
// time cannot be told from its start-up without tracing it (strace or perf inflate every
// syscall). The sequence below is the least any bridge plugin asks for a pod on a node whose
// bridge exists; the reference bridge plugin sends each of these requests too (and more: bridge
// create-or-exists and up, link lookups before every step, an address dump to check the
// gateway). It is built from lib/net/rtnl.ts's request builders, one per `ip` command, which
// only encode messages. mycni's extra requests (lo up, addrgenmode, the gateway `addr replace`,
// the bridge's up and carrier check) are its own cost, outside the limit.

/** Deterministic MACs for the fixed sequence's pod i (locally administered). */
function kernelMac(side: number, i: number): string {
  const hex = (b: number) => b.toString(16).padStart(2, "0");
  return `02:${hex(side)}:00:00:${hex(i >> 8)}:${hex(i & 255)}`;
}

function kernelVeth(i: number): string {
  return `bk${i}`;
}

/**
 * The kernel share of an ADD: one socket in each netns, then
 *   ip link show dev BRIDGE                              (its index, to enslave to)
 *   ip -n POD link add eth0 type veth peer bkI netns NODE
 *   ip -n POD link show dev eth0                         (its index, to address and route)
 *   ip -n POD addr add 10.252.X.Y/16 dev eth0
 *   ip -n POD link set eth0 up
 *   ip -n POD route add default via 10.252.0.1 dev eth0
 *   ip link set bkI master BRIDGE
 *   ip link set bkI type bridge_slave hairpin on
 *   ip link set bkI up
 */
function kernelAdd(netns: string, i: number): void {
  // Addresses from the top of mycni's pool, clear of what its IPAM hands out; its bridge holds
  // the gateway 10.252.0.1/16 (the mycni column's warm-up pod created it).
  const address = `10.252.${200 + (i >> 8)}.${i & 255}/16`, gateway = "10.252.0.1";
  using node = Rtnl.open();
  const bridge = linkGet(node, BRIDGE);
  if (!bridge) throw new Error(`${BRIDGE} does not exist yet`);
  using pod = Rtnl.open(netns);
  linkAddVeth(pod, { name: "eth0", mac: kernelMac(1, i), mtu: MTU }, {
    name: kernelVeth(i),
    mac: kernelMac(2, i),
    mtu: MTU,
    netnsPid: Deno.pid,
  });
  const dev = linkGet(pod, "eth0");
  if (!dev) throw new Error(`eth0 is not in ${netns}`);
  addrAdd(pod, dev, address);
  linkSet(pod, "eth0", { up: true });
  routeAdd(pod, { dst: "0.0.0.0/0", via: gateway, dev });
  linkSet(node, kernelVeth(i), { master: bridge.index });
  linkSetHairpin(node, kernelVeth(i));
  linkSet(node, kernelVeth(i), { up: true });
}

/**
 * The admission's kernel share: the fast path's element batch for pod i, as lib/node/
 * fast_admission.ts writes it for a new pod a deny-all policy isolates (its self element, its
 * ingress map element to the drop-only chain), in one nfnetlink batch, into the agent's table.
 */
function kernelBatch(i: number, op: "add" | "delete"): void {
  const ip = `10.248.${200 + (i >> 8)}.${i & 255}`;
  applyElementChanges([
    { op, set: "self4", type: "ipv4_addr . ipv4_addr", element: `${ip} . ${ip}` },
    { op, set: "ingress4", type: "ipv4_addr : verdict", element: `${ip} : jump ing_isolated` },
  ], { table: "inet mcbench" });
}

/** The kernel share of a DEL: a socket in the node netns, `ip link del dev bkI`. */
function kernelDel(i: number): void {
  using node = Rtnl.open();
  if (!linkDel(node, kernelVeth(i))) throw new Error(`${kernelVeth(i)} was not there`);
}

// ---- sequential ADD and DEL, every column interleaved --------------------------------------

type Col = "mycni" | "admit" | "reference" | "floor" | "kernel" | "batch";
type Pods = Record<Exclude<Col, "floor" | "batch">, TempNetns[]>;
type Cols = Record<`${"add" | "del"}.${Col}`, number[]>;

async function sequential(ctx: {
  dir: string;
  node: TempNetns;
  pods: Pods;
  floor: string;
  worker: KernelWorker;
}): Promise<Cols> {
  const { dir, node, pods, floor, worker } = ctx;
  const n = pods.mycni.length - 1;
  const exec = execIn(node);
  const mycni = mycniConf(dir, { name: "bench", log: "mycni.log", bridge: BRIDGE, cidr: POD_CIDR });
  const ref = refConf(dir, { name: "benchref", bridge: "ref0", cidr: "10.253.0.0/16" });
  // The same plugin and node settings, asking the agent (its own bridge and podCIDR).
  const admit = mycniConf(dir, {
    name: "benchadmit",
    log: "admit.log",
    bridge: "admit0",
    cidr: ADMIT_CIDR,
    agentSocket: `${dir}/agent.sock`,
  });
  const cols = Object.fromEntries(
    ["add", "del"].flatMap((v) =>
      ["mycni", "admit", "reference", "floor", "kernel", "batch"].map((c) => [`${v}.${c}`, []])
    ),
  ) as unknown as Cols;
  const runs = (verb: "ADD" | "DEL", i: number): Record<Col, () => Promise<number>> => ({
    mycni: () => exec([PLUGIN], mycni, cniEnv(verb, `m${i}`, pods.mycni[i].path)),
    admit: () => exec([PLUGIN], admit, admitEnv(verb, `a${i}`, pods.admit[i].path)),
    reference: () => exec([REF], ref, cniEnv(verb, `r${i}`, pods.reference[i].path)),
    floor: () => exec([floor], mycni, {}),
    kernel: () => verb === "ADD" ? worker.add(pods.kernel[i].path, i) : worker.del(i),
    batch: () => worker.batch(i, verb === "ADD" ? "add" : "delete"),
  });
  // Warm-up on pod n (not counted): bridges exist, caches are hot, and the worker has run its
  // code often enough for V8 to have compiled it.
  for (const verb of ["ADD", "DEL"] as const) {
    for (const run of Object.values(runs(verb, n))) await run();
  }
  for (let k = 0; k < 10; k++) {
    await worker.add(pods.kernel[n].path, n);
    await worker.del(n);
  }
  for (const verb of ["ADD", "DEL"] as const) {
    for (let i = 0; i < n; i++) {
      const order = Object.entries(runs(verb, i)) as [Col, () => Promise<number>][];
      // Rotate who goes first, so no column always runs right after the same neighbour.
      for (let k = 0; k < order.length; k++) {
        const [col, run] = order[(i + k) % order.length];
        cols[`${verb === "ADD" ? "add" : "del"}.${col}`].push(await run());
      }
    }
  }
  return cols;
}

function report(n: number, cols: Cols, steps: Record<string, number>): void {
  const f = (x: number) => x.toFixed(1).padStart(6);
  console.log(`plugin latency, ${n} pods, one interleaved run, median (p90) in ms`);
  for (const [k, v] of Object.entries(cols)) {
    console.log(`  ${k.padEnd(14)} ${f(median(v))} (${f(quantile(v, 0.9)).trim()})`);
  }
  for (const verb of ["add", "del"] as const) {
    const mine = median(cols[`${verb}.mycni`]);
    const floor = median(cols[`${verb}.floor`]), kernel = median(cols[`${verb}.kernel`]);
    const limit = floor + kernel;
    console.log(
      `${verb.toUpperCase()}: mycni ${mine.toFixed(1)} ms, limit ${limit.toFixed(1)} ms ` +
        `(floor ${floor.toFixed(1)} + kernel ${kernel.toFixed(1)}): ` +
        `mycni / limit = ${(mine / limit).toFixed(2)} (target <= ${TARGET.toFixed(2)}: ` +
        `${mine / limit <= TARGET ? "met" : "NOT met"})   ` +
        `reference ${median(cols[`${verb}.reference`]).toFixed(1)} ms ` +
        `(mycni / reference = ${(mine / median(cols[`${verb}.reference`])).toFixed(2)})`,
    );
  }
  const admit = median(cols["add.admit"]), plain = median(cols["add.mycni"]);
  const limit = median(cols["add.floor"]) + median(cols["add.kernel"]) + median(cols["add.batch"]);
  console.log(
    `ADD with admission: ${admit.toFixed(1)} ms, limit ${limit.toFixed(1)} ms (floor + kernel + ` +
      `element batch ${median(cols["add.batch"]).toFixed(1)}): mycni / limit = ` +
      `${(admit / limit).toFixed(2)} (target <= ${ADMIT_TARGET.toFixed(2)}: ` +
      `${admit / limit <= ADMIT_TARGET ? "met" : "NOT met"}); with / without admission = ` +
      `${(admit / plain).toFixed(2)}; DEL with / without = ` +
      `${(median(cols["del.admit"]) / median(cols["del.mycni"])).toFixed(2)}`,
  );
  const text = Object.entries(steps).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ");
  console.log(`mycni's own log, median stepsMs: ${text}`);
}

/** Median of each ADD/DEL step and of durationMs in the plugin's log, but for the warm-up pod. */
async function stepMedians(logFile: string, warmUp: string): Promise<Record<string, number>> {
  const lines = (await Deno.readTextFile(logFile)).trim().split("\n").map((l) => JSON.parse(l));
  const by: Record<string, number[]> = {};
  for (const l of lines) {
    if ((l.verb !== "ADD" && l.verb !== "DEL") || l.containerId === warmUp) continue;
    for (const [step, ms] of Object.entries({ ...l.stepsMs, total: l.durationMs })) {
      (by[`${l.verb} ${step}`] ??= []).push(ms as number);
    }
  }
  return Object.fromEntries(Object.entries(by).map(([k, v]) => [k, median(v)]));
}

// ---- burst: 49 ADDs, 8 at a time, interleaved with the reference ---------------------------

/**
 * 49 concurrent ADDs, 8 at a time, as a runtime starting many pods, per second, for mycni, the
 * reference and the bare floor process (the ceiling of any Deno plugin here). Interleaved like
 * the sequential runs: each round runs one burst of every column, in a rotating order, and DELs
 * between rounds; the figures are medians over the rounds.
 */
async function burst(ctx: {
  dir: string;
  node: TempNetns;
  floor: string;
  rounds: number;
}): Promise<void> {
  const COUNT = 50, PARALLEL = 8;
  const { dir, node, floor, rounds } = ctx;
  const pods = {
    mycni: [] as TempNetns[],
    admit: [] as TempNetns[],
    reference: [] as TempNetns[],
  };
  try {
    for (const set of Object.values(pods)) {
      for (let i = 0; i < COUNT; i++) set.push(await tempNetns("mcbb"));
    }
    const exec = execIn(node);
    const mycni = mycniConf(dir, {
      name: "burst",
      log: "burst.log",
      bridge: "burst0",
      cidr: "10.250.0.0/16",
    });
    const ref = refConf(dir, { name: "burstref", bridge: "burstref0", cidr: "10.251.0.0/16" });
    const admit = mycniConf(dir, {
      name: "burstadmit",
      log: "burstadmit.log",
      bridge: "burstadm0",
      cidr: BURST_ADMIT_CIDR,
      agentSocket: `${dir}/agent.sock`,
    });
    const cols = {
      mycni: (verb: string, i: number) =>
        exec([PLUGIN], mycni, cniEnv(verb, `burst${i}`, pods.mycni[i].path)),
      admit: (verb: string, i: number) =>
        exec([PLUGIN], admit, admitEnv(verb, `burstadm${i}`, pods.admit[i].path)),
      reference: (verb: string, i: number) =>
        exec([REF], ref, cniEnv(verb, `burstref${i}`, pods.reference[i].path)),
      floor: (_verb: string, _i: number) => exec([floor], mycni, {}),
    };
    const rates: Record<string, number[]> = { mycni: [], admit: [], reference: [], floor: [] };
    const names = Object.keys(cols) as (keyof typeof cols)[];
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < names.length; k++) {
        const name = names[(r + k) % names.length];
        const run = cols[name];
        await run("ADD", 0); // the bridge exists before the clock starts
        let next = 1;
        const t = performance.now();
        await Promise.all([...Array(PARALLEL)].map(async () => {
          while (next < COUNT) await run("ADD", next++);
        }));
        rates[name].push((COUNT - 1) / ((performance.now() - t) / 1000));
        if (name !== "floor") { for (let i = 0; i < COUNT; i++) await run("DEL", i); }
      }
    }
    const r = (k: string) => median(rates[k]).toFixed(0);
    console.log(
      `burst: ${COUNT - 1} ADDs, ${PARALLEL} at a time, ${rounds} interleaved rounds, median ` +
        `per second: mycni ${r("mycni")}, reference ${r("reference")}, bare Deno process ` +
        `${r("floor")} (mycni / bare process = ` +
        `${(median(rates.mycni) / median(rates.floor)).toFixed(2)})`,
    );
    const ratio = median(rates.admit) / median(rates.mycni);
    console.log(
      `burst with admission: ${r("admit")} per second, with / without admission = ` +
        `${ratio.toFixed(2)} (target >= ${BURST_TARGET}: ${
          ratio >= BURST_TARGET ? "met" : "NOT met"
        })`,
    );
  } finally {
    for (const p of Object.values(pods).flat()) await p[Symbol.asyncDispose]();
  }
}

// ---- the agent admitting pods: its own code in the node netns ---------------------------------

/** The running agent worker. */
interface AgentWorker {
  close(): Promise<void>;
}

/**
 * Starts this file with --agent-worker in the node netns: the agent's admission server, admission
 * and table step over the real table sync, for `count` sequential pods (a0...) and the burst's
 * (burstadm0...); resolves once it serves and its first table is in the kernel.
 */
async function startAgentWorker(
  node: TempNetns,
  socket: string,
  count: number,
): Promise<AgentWorker> {
  const child = new Deno.Command("nsenter", {
    args: [
      `--net=${node.path}`,
      "--",
      Deno.execPath(),
      "run",
      "--allow-all",
      "--no-lock",
      fileURLToPath(import.meta.url),
      "--agent-worker",
      JSON.stringify({ socket, count }),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines())
    .getReader();
  const { value } = await lines.read();
  if (value !== "ready") throw new Error(`agent worker: ${value}`);
  const writer = child.stdin.getWriter();
  return {
    async close() {
      await writer.close().catch(() => {});
      await child.status;
    },
  };
}

/** The agent worker (in the node netns): serves until its stdin closes. */
async function agentWorker(arg: string): Promise<void> {
  const { socket, count } = JSON.parse(arg) as { socket: string; count: number };
  const log = createLogger(() => {}); // its figures are the plugin's log lines
  const own = { name: "n1", ips: ["192.0.2.1"], podCIDRs: [ADMIT_CIDR, BURST_ADMIT_CIDR] };
  const names = [
    ...Array.from({ length: count }, (_, i) => `a${i}`),
    ...Array.from({ length: 50 }, (_, i) => `burstadm${i}`),
  ];
  const pods = new Map(names.map((name) => [`${ADMIT_NS}/${name}`, {
    namespace: ADMIT_NS,
    name,
    labels: { app: "bench" },
    node: "n1",
    ips: [],
    hostNetwork: false,
    ports: [],
  }]));
  const deny = parseNetworkPolicy({
    metadata: { namespace: ADMIT_NS, name: "deny" },
    spec: { podSelector: {}, policyTypes: ["Ingress"] },
  });
  if (!deny.ok) throw new Error(deny.reason);
  const tables = createTableSync();
  const admission = createAdmission({
    nodeName: "n1",
    log,
    readBindings: () => new Map(),
    kernel: {
      patch: (e) => tables.patch(e),
      deleteConntrack: (ips) => deleteConntrackEntries(ips),
    },
  });
  const table = createTableStep({ nodeName: "n1", noMasqueradeCidrs: [], policy: true }, log, {
    tables,
    bindings: admission.tables,
  });
  let applied = 0;
  const schedule = createScheduler({
    async run(state, o) {
      const r = await table.run({ state, own, cluster: own.podCIDRs, full: o.full });
      if (r.problem === undefined) applied++;
      return r.problem === undefined;
    },
  }, () => {});
  schedule.policy({
    pods,
    namespaces: new Map([[ADMIT_NS, { name: ADMIT_NS, labels: {} }]]),
    policies: new Map([[`${ADMIT_NS}/deny`, deny.entry]]),
  });
  admission.attach(schedule);
  schedule.nodes(new Map([["n1", own]]), true);
  const stop = new AbortController();
  const server = await serveAdmission({
    path: socket,
    handler: admission.handler,
    podCIDRs: () => own.podCIDRs.map((c) => parseCidr(c)),
    signal: stop.signal,
    log,
  });
  while (applied === 0) await new Promise((r) => setTimeout(r, 10));
  Deno.stdout.writeSync(new TextEncoder().encode("ready\n"));
  for await (const _ of Deno.stdin.readable) { /* until the bench closes it */ }
  stop.abort();
  await server.closed;
  await schedule.idle();
}

/** The admit and release step times in the admitting plugin's log, but for the warm-up pod. */
async function agentStats(logFile: string, warmUp: string): Promise<string> {
  const lines = (await Deno.readTextFile(logFile)).trim().split("\n").map((l) => JSON.parse(l));
  const admits: number[] = [], releases: number[] = [];
  for (const l of lines) {
    if (l.containerId === warmUp) continue;
    if (l.verb === "ADD" && l.stepsMs?.admit !== undefined) admits.push(l.stepsMs.admit);
    if (l.verb === "DEL" && l.stepsMs?.agent !== undefined) releases.push(l.stepsMs.agent);
  }
  const f = (xs: number[]) =>
    `median ${median(xs).toFixed(1)} ms, p90 ${quantile(xs, 0.9).toFixed(1)} ms`;
  return `ADD's admit step ${f(admits)}; DEL's release step ${f(releases)}`;
}

// ---- the first pod on a new node ------------------------------------------------------------

/**
 * The first pod on a new node, where the bridge is created: mycni and the reference, each on a
 * fresh node netns left idle for a moment first (as a real node is), then the pod's gateway
 * must answer at once.
 */
async function firstPod(dir: string): Promise<void> {
  const confs = {
    mycni: {
      argv: [PLUGIN],
      conf: { type: "mycni", podCIDRs: ["10.249.0.0/24"], dataDir: `${dir}/first` },
    },
    reference: {
      argv: [REF],
      conf: {
        type: "bridge",
        isGateway: true,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: "10.249.0.0/24" }]],
          dataDir: `${dir}/first`,
        },
      },
    },
  };
  const out: string[] = [];
  for (const [name, { argv, conf }] of Object.entries(confs)) {
    await using node = await tempNetns("mcfn");
    await using pod = await tempNetns("mcfp");
    await new Promise((r) => setTimeout(r, 1500));
    const stdin = JSON.stringify({
      cniVersion: "1.0.0",
      name: `first${name}`,
      bridge: "first0",
      ...conf,
    });
    const ms = await execIn(node)(argv, stdin, cniEnv("ADD", `first${name}`, pod.path));
    const ping = await runOutput(pod.exec(["ping", "-c1", "-W1", "10.249.0.1"]));
    out.push(`${name} ${ms.toFixed(0)} ms (gateway ${ping.code === 0 ? "answers" : "SILENT"})`);
  }
  console.log(`first pod on a new node (bridge created): ${out.join(", ")}`);
}

// ---- VERSION, as podman sends it before each ADD and DEL ---------------------------------------

/**
 * VERSION with podman's environment (`dummy` netns, path and ifname) against the floor, `n`
 * runs each, alternating. The plugin answers it without the kernel, so the floor is its limit.
 * (Only the agent's VERSION after an install also waits for Deno to store the code cache.)
 */
async function version(node: TempNetns, floor: string, n: number): Promise<void> {
  const exec = execIn(node);
  const env = {
    CNI_COMMAND: "VERSION",
    CNI_NETNS: "dummy",
    CNI_PATH: "dummy",
    CNI_IFNAME: "dummy",
  };
  const stdin = '{"cniVersion":"1.0.0"}';
  const times: { mycni: number[]; floor: number[] } = { mycni: [], floor: [] };
  for (let i = 0; i < n; i++) {
    times.mycni.push(await exec([PLUGIN], stdin, env));
    times.floor.push(await exec([floor], stdin, {}));
  }
  const mine = median(times.mycni), bare = median(times.floor);
  console.log(
    `VERSION (podman sends one before each ADD and DEL): mycni ${mine.toFixed(1)} ms, floor ` +
      `${bare.toFixed(1)} ms (mycni / floor = ${(mine / bare).toFixed(2)})`,
  );
}

// ---- helpers ----------------------------------------------------------------------------------

/** Runs argv in the node netns with env and stdin as a runtime would; returns its milliseconds. */
function execIn(node: TempNetns) {
  return async (argv: string[], stdin: string, env: Record<string, string>) => {
    const t = performance.now();
    const out = await runOutput(node.exec(argv), { stdin, env });
    const ms = performance.now() - t;
    if (out.code !== 0) throw new Error(`${argv.join(" ")} failed: ${out.stdout} ${out.stderr}`);
    return ms;
  };
}

/** cniEnv() naming the pod `id` of ADMIT_NS, as the kubelet does: the agent knows its object. */
function admitEnv(cmd: string, id: string, netns: string): Record<string, string> {
  return {
    ...cniEnv(cmd, id, netns),
    CNI_ARGS: `K8S_POD_NAMESPACE=${ADMIT_NS};K8S_POD_NAME=${id}`,
  };
}

function cniEnv(cmd: string, id: string, netns: string, ifname = "eth0"): Record<string, string> {
  return {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: ifname,
    CNI_PATH: "/usr/lib/cni",
  };
}

function mycniConf(
  dir: string,
  c: { name: string; log: string; bridge: string; cidr: string; agentSocket?: string },
): string {
  return JSON.stringify({
    ...(c.agentSocket ? { agentSocket: c.agentSocket } : {}),
    cniVersion: "1.0.0",
    name: c.name,
    type: "mycni",
    podCIDRs: [c.cidr],
    dataDir: `${dir}/ipam`,
    logFile: `${dir}/${c.log}`,
    mtu: MTU,
    bridge: c.bridge,
  });
}

function refConf(dir: string, c: { name: string; bridge: string; cidr: string }): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: c.name,
    type: "bridge",
    bridge: c.bridge,
    isGateway: true,
    hairpinMode: true,
    mtu: MTU,
    // A default route in the pod, as mycni sets: the same work on both sides.
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: c.cidr }]],
      routes: [{ dst: "0.0.0.0/0" }],
      dataDir: `${dir}/ipam`,
    },
  });
}
