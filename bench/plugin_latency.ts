// Plugin ADD/DEL latency beside the reference bridge + host-local, and against the limit
// DESIGN.md sets: the floor of any Deno plugin (start, read stdin, print JSON) plus the least
// `ip` work an ADD needs (one batch in the pod netns + one on the node) or a DEL (one veth
// delete). Interleaved in one run so machine noise hits every column alike. Prints ratios.
//   make bench   (or: deno run -A bench/plugin_latency.ts [pods])
import { fileURLToPath } from "node:url";
import { run, runOutput } from "../lib/net/run.ts";
import { tempNetns } from "../tests/harness/netns.ts";

const N = Number(Deno.args[0] ?? 30);
const PLUGIN = fileURLToPath(new URL("../bin/mycni", import.meta.url));
const REF = "/usr/lib/cni/bridge";

await using node = await tempNetns("mcbn");
const dir = await Deno.makeTempDir({ prefix: "mycni-bench-" });
const pods = [];
for (let i = 0; i < N; i++) pods.push(await tempNetns("mcbp"));
const floorJs = `${dir}/floor.js`;
// The floor reads stdin the cheapest way Deno offers (as the plugin does) and prints JSON.
await Deno.writeTextFile(
  floorJs,
  [
    "const buf = new Uint8Array(65536); let s = 0;",
    "for (let n = Deno.stdin.readSync(buf); n !== null; n = Deno.stdin.readSync(buf)) s += n;",
    'console.log(JSON.stringify({ cniVersion: "1.0.0", n: s }));',
  ].join("\n") + "\n",
);
// The same interpreter line the build gives bin/mycni, so the floor pays what the plugin pays.
const shebang = (await Deno.readTextFile(PLUGIN)).split("\n")[0];
const floorArgv = shebang.startsWith("#!/usr/bin/env -S ")
  ? [...shebang.slice("#!/usr/bin/env -S ".length).split(" "), floorJs]
  : ["deno", "run", "-A", floorJs];

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
  ipam: {
    type: "host-local",
    ranges: [[{ subnet: "10.253.0.0/16" }]],
    dataDir: `${dir}/ipam`,
    routes: [{ dst: "0.0.0.0/0" }],
  },
});

async function timed(
  argv: string[],
  stdin: string,
  env: Record<string, string> = {},
): Promise<number> {
  const t = performance.now();
  const out = await runOutput(["nsenter", `--net=${node.path}`, "--", ...argv], { stdin, env });
  const ms = performance.now() - t;
  if (out.code !== 0) throw new Error(`${argv[0]} failed: ${out.stdout} ${out.stderr}`);
  return ms;
}

function cniEnv(cmd: string, id: string, netns: string): Record<string, string> {
  return {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: "/usr/lib/cni",
  };
}

// The least ip work: create the pair from the pod side and configure it, then attach on the node.
async function ipWorkAdd(i: number, netns: string): Promise<number> {
  const t = performance.now();
  await run(["nsenter", `--net=${netns}`, "--", "ip", "-batch", "-"], {
    stdin:
      `link add name ip${i} type veth peer name ipw${i} netns ${await nodePid()}\naddr add 10.254.${
        i >> 8
      }.${i & 255}/16 dev ip${i}\nlink set dev ip${i} up\n`,
  });
  await run(["nsenter", `--net=${node.path}`, "--", "ip", "-batch", "-"], {
    stdin: `link set dev ipw${i} master ipw0\nlink set dev ipw${i} up\n`,
  });
  return performance.now() - t;
}
async function ipWorkDel(i: number): Promise<number> {
  const t = performance.now();
  await run(["nsenter", `--net=${node.path}`, "--", "ip", "link", "del", `ipw${i}`]);
  return performance.now() - t;
}
// A process that lives in the node netns, to name as the veth peer's target namespace.
let sleeper: Deno.ChildProcess | undefined;
async function nodePid(): Promise<number> {
  if (!sleeper) {
    sleeper = new Deno.Command("nsenter", {
      args: [`--net=${node.path}`, "--", "sleep", "600"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await new Promise((r) => setTimeout(r, 50));
    await run([
      "nsenter",
      `--net=${node.path}`,
      "--",
      "ip",
      "link",
      "add",
      "ipw0",
      "type",
      "bridge",
    ]);
  }
  return sleeper.pid;
}

const cols = {
  mycniAdd: [] as number[],
  refAdd: [] as number[],
  floor: [] as number[],
  ipAdd: [] as number[],
  mycniDel: [] as number[],
  refDel: [] as number[],
  ipDel: [] as number[],
};
const keep: AsyncDisposable[] = [];
async function tempNetnsKeep() {
  const ns = await tempNetns("mcbw");
  keep.push(ns);
  return ns;
}
// Warm-up: bridges exist, caches hot (not counted).
await timed([PLUGIN], mycniConf, cniEnv("ADD", "warm", (await tempNetnsKeep()).path));
await timed([REF], refConf, cniEnv("ADD", "warmref", (await tempNetnsKeep()).path));
await ipWorkAdd(999, (await tempNetnsKeep()).path);

try {
  for (let i = 0; i < N; i++) {
    const p = pods[i].path;
    // A pod netns holds one eth0: give each column its own ifname in the same pod.
    cols.mycniAdd.push(
      await timed([PLUGIN], mycniConf, { ...cniEnv("ADD", `m${i}`, p), CNI_IFNAME: "eth0" }),
    );
    cols.refAdd.push(
      await timed([REF], refConf, { ...cniEnv("ADD", `r${i}`, p), CNI_IFNAME: "eth1" }),
    );
    cols.floor.push(await timed(floorArgv, mycniConf));
    cols.ipAdd.push(await ipWorkAdd(i + 1, p));
  }
  for (let i = 0; i < N; i++) {
    const p = pods[i].path;
    cols.mycniDel.push(await timed([PLUGIN], mycniConf, cniEnv("DEL", `m${i}`, p)));
    cols.refDel.push(
      await timed([REF], refConf, { ...cniEnv("DEL", `r${i}`, p), CNI_IFNAME: "eth1" }),
    );
    cols.ipDel.push(await ipWorkDel(i + 1));
  }
} finally {
  sleeper?.kill();
  await sleeper?.status;
  for (const k of keep) await k[Symbol.asyncDispose]();
  for (const p of pods) await p[Symbol.asyncDispose]();
  await Deno.remove(dir, { recursive: true });
}

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)];
const f = (x: number) => x.toFixed(1).padStart(7);
console.log(`plugin latency, ${N} pods, one run, medians (p90) in ms`);
for (const [k, v] of Object.entries(cols)) {
  console.log(`  ${k.padEnd(9)} ${f(med(v))} (${f(p90(v)).trim()})`);
}
const addLimit = med(cols.floor) + med(cols.ipAdd), delLimit = med(cols.floor) + med(cols.ipDel);
console.log(
  `ADD: mycni / (floor + ip work) = ${
    (med(cols.mycniAdd) / addLimit).toFixed(2)
  }  (target <= 1.15)   mycni / reference bridge = ${
    (med(cols.mycniAdd) / med(cols.refAdd)).toFixed(2)
  }`,
);
console.log(
  `DEL: mycni / (floor + ip work) = ${
    (med(cols.mycniDel) / delLimit).toFixed(2)
  }  (target <= 1.15)   mycni / reference bridge = ${
    (med(cols.mycniDel) / med(cols.refDel)).toFixed(2)
  }`,
);
