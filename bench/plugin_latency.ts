// Plugin ADD/DEL latency beside the reference bridge + host-local, and against the limit
// DESIGN.md sets for a Deno plugin that drives `ip`: the floor (a Deno process that only reads
// stdin and prints JSON) plus the least `ip` work the verb needs (ADD: one batch in the pod
// netns + one on the node; DEL: one veth delete). The limit is measured two ways: as the sum
// of the floor and the ip work run from a warm process, and directly, as a minimal Deno plugin
// (a fresh process that reads stdin, runs exactly that ip work and prints JSON). All columns are
// interleaved in one run so machine noise hits them alike. Prints medians and ratios.
//   make bench   (or: deno run -A bench/plugin_latency.ts [pods])
import { fileURLToPath } from "node:url";
import { run, runOutput } from "../lib/process/run.ts";
import { type TempNetns, tempNetns } from "../tests/harness/netns.ts";

const N = Number(Deno.args[0] ?? 30);
const PLUGIN = fileURLToPath(new URL("../bin/mycni", import.meta.url));
const REF = "/usr/lib/cni/bridge";

// The least ip work, as ip -batch text: shared by the warm measurement and the minimal plugin.
const podBatch = (i: number, pid: number) =>
  `link add name eth1 type veth peer name ipw${i} netns ${pid}\n` +
  `addr add 10.254.${i >> 8}.${i & 255}/16 dev eth1\nlink set dev eth1 up\n`;
const nodeBatch = (i: number) => `link set dev ipw${i} master ipwbr\nlink set dev ipw${i} up\n`;

// Deno.exit() is the quickest way out of a small script (no runtime teardown).
const FLOOR_JS = [
  "const buf = new Uint8Array(65536); let s = 0;",
  "for (let n = Deno.stdin.readSync(buf); n !== null; n = Deno.stdin.readSync(buf)) s += n;",
  'console.log(JSON.stringify({ cniVersion: "1.0.0", n: s }));',
  "Deno.exit(0);",
].join("\n");

// A Deno plugin that does nothing but the least ip work: the limit, measured as one process.
const MINIMAL_JS = FLOOR_JS.replace(/console\.log[^]*$/, "") + `
const env = Deno.env.toObject(), i = Number(env.CNI_CONTAINERID.slice(1));
async function ip(argv, stdin) {
  const c = new Deno.Command(argv[0], { args: argv.slice(1), stdin: stdin ? "piped" : "null", stdout: "piped", stderr: "piped" }).spawn();
  if (stdin) { const w = c.stdin.getWriter(); await w.write(new TextEncoder().encode(stdin)); await w.close(); }
  const o = await c.output(); if (o.code !== 0) { console.error(new TextDecoder().decode(o.stderr)); Deno.exit(1); }
}
if (env.CNI_COMMAND === "ADD") {
  await ip(["nsenter", "--net=" + env.CNI_NETNS, "--", "ip", "-batch", "-"], (${podBatch.toString()})(i, Deno.pid));
  await ip(["ip", "-batch", "-"], (${nodeBatch.toString()})(i));
} else {
  await ip(["ip", "link", "del", "ipw" + i]);
}
console.log(JSON.stringify({ cniVersion: "1.0.0" }));
Deno.exit(0);
`;

await using node = await tempNetns("mcbn");
const dir = await Deno.makeTempDir({ prefix: "mycni-bench-" });
const pods: TempNetns[] = [];
let sleeper: Deno.ChildProcess | undefined;
try {
  for (let i = 0; i < N + 1; i++) pods.push(await tempNetns("mcbp"));
  // The baselines are launched exactly as bin/mycni is: executable files with its interpreter
  // line (`env -S deno run ...` for a bundle), so they pay what it pays to start.
  const firstLine = (await Deno.readTextFile(PLUGIN)).split("\n")[0];
  const shebang = firstLine.startsWith("#!")
    ? firstLine
    : `#!/usr/bin/env -S ${Deno.execPath()} run --allow-all --no-config --no-lock --no-prompt`;
  const floor = [await writeExecutable(`${dir}/floor.js`, `${shebang}\n${FLOOR_JS}\n`)];
  const minimal = [await writeExecutable(`${dir}/minimal.js`, `${shebang}\n${MINIMAL_JS}`)];
  // A process living in the node netns, to name as the veth peer's namespace from a warm process.
  sleeper = new Deno.Command("nsenter", {
    args: [`--net=${node.path}`, "--", "sleep", "600"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await run([
    "nsenter",
    `--net=${node.path}`,
    "--",
    "ip",
    "link",
    "add",
    "ipwbr",
    "type",
    "bridge",
  ]);
  await run(["nsenter", `--net=${node.path}`, "--", "ip", "link", "set", "ipwbr", "up"]);
  const cols = await measure({ dir, node, pods, floor, minimal, sleeperPid: sleeper.pid });
  report(cols);
  await burst(node, dir, floor, minimal);
  await firstPod(dir);
} finally {
  sleeper?.kill();
  await sleeper?.status;
  for (const p of pods) await p[Symbol.asyncDispose]();
  await Deno.remove(dir, { recursive: true });
}

type Cols = Record<
  | "mycniAdd"
  | "refAdd"
  | "minimalAdd"
  | "floor"
  | "ipAdd"
  | "mycniDel"
  | "refDel"
  | "minimalDel"
  | "ipDel",
  number[]
>;

async function measure(
  ctx: {
    dir: string;
    node: TempNetns;
    pods: TempNetns[];
    floor: string[];
    minimal: string[];
    sleeperPid: number;
  },
): Promise<Cols> {
  const { dir, node, pods } = ctx;
  const mycniConf = JSON.stringify({
    cniVersion: "1.0.0",
    name: "bench",
    type: "mycni",
    podCIDRs: ["10.252.0.0/16"],
    dataDir: `${dir}/ipam`,
    logFile: `${dir}/mycni.log`,
    mtu: 1500,
    bridge: "mycni0",
  });
  const refConf = JSON.stringify({
    cniVersion: "1.0.0",
    name: "benchref",
    type: "bridge",
    bridge: "ref0",
    isGateway: true,
    hairpinMode: true,
    mtu: 1500,
    ipam: { type: "host-local", ranges: [[{ subnet: "10.253.0.0/16" }]], dataDir: `${dir}/ipam` },
  });
  const inNode = (argv: string[]) => ["nsenter", `--net=${node.path}`, "--", ...argv];
  const timed = async (argv: string[], stdin: string, env: Record<string, string> = {}) => {
    const t = performance.now();
    const out = await runOutput(inNode(argv), { stdin, env });
    if (out.code !== 0) throw new Error(`${argv.join(" ")} failed: ${out.stdout} ${out.stderr}`);
    return performance.now() - t;
  };
  const env = (cmd: string, id: string, netns: string, ifname = "eth0") => ({
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: ifname,
    CNI_PATH: "/usr/lib/cni",
  });
  const warmIp = async (argvs: [string[], string | undefined][]) => {
    const t = performance.now();
    for (const [argv, stdin] of argvs) await run(argv, { stdin });
    return performance.now() - t;
  };
  const cols: Cols = {
    mycniAdd: [],
    refAdd: [],
    minimalAdd: [],
    floor: [],
    ipAdd: [],
    mycniDel: [],
    refDel: [],
    minimalDel: [],
    ipDel: [],
  };
  // Warm-up (not counted): bridges exist, caches are hot. Pod N is the warm-up pod.
  const w = pods[N].path;
  await timed([PLUGIN], mycniConf, env("ADD", "warm", w));
  await timed([REF], refConf, env("ADD", "warmref", w, "eth2"));
  await timed(ctx.minimal, "{}", env("ADD", "m9999", w));
  // Each pod gets one interface per column: eth0 mycni, eth1 ip work, eth2 reference.
  for (let i = 0; i < N; i++) {
    const p = pods[i].path;
    cols.mycniAdd.push(await timed([PLUGIN], mycniConf, env("ADD", `m${i}`, p)));
    cols.refAdd.push(await timed([REF], refConf, env("ADD", `r${i}`, p, "eth2")));
    cols.floor.push(await timed(ctx.floor, mycniConf));
    if (i % 2 === 0) {
      cols.minimalAdd.push(
        await timed(ctx.minimal, mycniConf, env("ADD", `m${i}`, p)),
      );
    } else {
      cols.ipAdd.push(
        await warmIp([
          [["nsenter", `--net=${p}`, "--", "ip", "-batch", "-"], podBatch(i, ctx.sleeperPid)],
          [inNode(["ip", "-batch", "-"]), nodeBatch(i)],
        ]),
      );
    }
  }
  for (let i = 0; i < N; i++) {
    const p = pods[i].path;
    cols.mycniDel.push(await timed([PLUGIN], mycniConf, env("DEL", `m${i}`, p)));
    cols.refDel.push(await timed([REF], refConf, env("DEL", `r${i}`, p, "eth2")));
    if (i % 2 === 0) {
      cols.minimalDel.push(
        await timed(ctx.minimal, mycniConf, env("DEL", `m${i}`, p)),
      );
    } else {
      cols.ipDel.push(await warmIp([[inNode(["ip", "link", "del", `ipw${i}`]), undefined]]));
    }
  }
  return cols;
}

function report(cols: Cols): void {
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const med = (xs: number[]) => sorted(xs)[Math.floor(xs.length / 2)];
  const p95 = (xs: number[]) => sorted(xs)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))];
  const f = (x: number) => x.toFixed(1).padStart(7);
  console.log(`plugin latency, ${N} pods, one interleaved run, median (p95) in ms`);
  for (const [k, v] of Object.entries(cols)) {
    console.log(`  ${k.padEnd(10)} ${f(med(v))} (${f(p95(v)).trim()})`);
  }
  for (const verb of ["Add", "Del"] as const) {
    const mine = med(cols[`mycni${verb}`]);
    const sum = med(cols.floor) + med(cols[`ip${verb}`]);
    console.log(
      `${verb.toUpperCase()}: mycni / (floor + warm ip work) = ${(mine / sum).toFixed(2)}` +
        `   mycni / minimal Deno plugin = ${(mine / med(cols[`minimal${verb}`])).toFixed(2)}` +
        `   (target <= 1.15)   mycni / reference bridge = ${
          (mine / med(cols[`ref${verb}`])).toFixed(2)
        }`,
    );
  }
}

/**
 * 50 concurrent ADDs, 8 at a time, as a runtime starting many pods: per second, for mycni, the
 * reference, and the ceilings a Deno plugin has on this machine (the bare floor process, and the
 * minimal Deno plugin doing the least ip work).
 */
async function burst(
  node: TempNetns,
  dir: string,
  floor: string[],
  minimal: string[],
): Promise<void> {
  const COUNT = 50, PARALLEL = 8;
  const pods: TempNetns[] = [];
  try {
    for (let i = 0; i < COUNT; i++) pods.push(await tempNetns("mcbb"));
    const mycniConf = JSON.stringify({
      cniVersion: "1.0.0",
      name: "burst",
      type: "mycni",
      podCIDRs: ["10.250.0.0/16"],
      dataDir: `${dir}/ipam`,
      logFile: `${dir}/burst.log`,
      mtu: 1500,
      bridge: "burst0",
    });
    const refConf = JSON.stringify({
      cniVersion: "1.0.0",
      name: "burstref",
      type: "bridge",
      bridge: "burstref0",
      isGateway: true,
      mtu: 1500,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.251.0.0/16" }]], dataDir: `${dir}/ipam` },
    });
    const runs = [
      { name: "floor", argv: floor, ifname: "eth9", conf: mycniConf },
      { name: "minimal", argv: minimal, ifname: "eth1", conf: mycniConf },
      { name: "mycni", argv: [PLUGIN], ifname: "eth0", conf: mycniConf },
      { name: "reference", argv: [REF], ifname: "eth2", conf: refConf },
    ];
    const rates: Record<string, number> = {};
    for (const { name, argv, ifname, conf } of runs) {
      // minimal.js names its veth after the number in the container ID.
      const id = (i: number) => name === "minimal" ? `m${2000 + i}` : `burst${i}`;
      const exec = (cmd: string, i: number) =>
        runOutput(["nsenter", `--net=${node.path}`, "--", ...argv], {
          stdin: conf,
          env: {
            CNI_COMMAND: cmd,
            CNI_CONTAINERID: id(i),
            CNI_NETNS: pods[i].path,
            CNI_IFNAME: ifname,
            CNI_PATH: "/usr/lib/cni",
          },
        });
      await exec("ADD", 0); // bridges exist and caches are warm before the clock starts
      let next = 1, failed = 0;
      const t = performance.now();
      await Promise.all([...Array(PARALLEL)].map(async () => {
        while (next < COUNT) if ((await exec("ADD", next++)).code !== 0) failed++;
      }));
      if (failed) throw new Error(`burst: ${failed} ${name} ADDs failed`);
      rates[name] = (COUNT - 1) / ((performance.now() - t) / 1000);
      if (name !== "floor") { for (let i = 0; i < COUNT; i++) await exec("DEL", i); }
    }
    const r = (k: string) => rates[k].toFixed(0);
    console.log(
      `burst: ${COUNT - 1} ADDs, ${PARALLEL} at a time, per second: mycni ${r("mycni")}, ` +
        `reference ${r("reference")}; ceilings here: bare Deno process ${r("floor")}, ` +
        `minimal Deno plugin ${r("minimal")}; mycni / minimal = ` +
        `${(rates.mycni / rates.minimal).toFixed(2)}   (issue #2 asked >= 60/s)`,
    );
  } finally {
    for (const p of pods) await p[Symbol.asyncDispose]();
  }
}

async function writeExecutable(path: string, text: string): Promise<string> {
  await Deno.writeTextFile(path, text, { mode: 0o755 });
  return path;
}

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
    const t = performance.now();
    const res = await runOutput(node.exec(argv), {
      stdin: JSON.stringify({
        cniVersion: "1.0.0",
        name: `first${name}`,
        bridge: "first0",
        ...conf,
      }),
      env: {
        CNI_COMMAND: "ADD",
        CNI_CONTAINERID: `first${name}`,
        CNI_NETNS: pod.path,
        CNI_IFNAME: "eth0",
        CNI_PATH: "/usr/lib/cni",
      },
    });
    const ms = performance.now() - t;
    if (res.code !== 0) throw new Error(`first pod: ${name} ADD failed: ${res.stdout}`);
    const ping = await runOutput(pod.exec(["ping", "-c1", "-W1", "10.249.0.1"]));
    out.push(`${name} ${ms.toFixed(0)} ms (gateway ${ping.code === 0 ? "answers" : "SILENT"})`);
  }
  console.log(`first pod on a new node (bridge created): ${out.join(", ")}`);
}
