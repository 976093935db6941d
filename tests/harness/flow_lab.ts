// A small lab for the flow log: a client and a server namespace on either side of a router
// namespace whose `inet mycni` table is shaped like the agent's (forward hook, replies first,
// a verdict map from the server's addresses to a per-target chain that ends in the deny path
// with the log rules before its drop). Dual-stack. Everything lives in the three namespaces.
import { type FlowDecider, flowLogObjects, flowLogRules } from "../../lib/policy/flow_log_rules.ts";
import {
  emptyTable,
  NFT_TABLE,
  type NftTable,
  renderFullTable,
  renderTableChange,
} from "../../lib/nft/ruleset.ts";
import { inNetns, run, runOutput } from "../../lib/process/run.ts";
import { type TempNetns, tempNetns } from "./netns.ts";

/** The lab's addresses by family. */
export const LAB = {
  client: { 4: "10.77.1.2", 6: "fd77:1::2" },
  router: { 4: "10.77.1.1", 6: "fd77:1::1" },
  routerOut: { 4: "10.77.2.1", 6: "fd77:2::1" },
  server: { 4: "10.77.2.2", 6: "fd77:2::2" },
} as const;

export interface FlowLab extends AsyncDisposable {
  readonly client: TempNetns;
  readonly router: TempNetns;
  readonly server: TempNetns;
}

/** Builds the three namespaces, wired and routed, forwarding on in the router. */
export async function flowLab(): Promise<FlowLab> {
  const client = await tempNetns("mfc");
  const router = await tempNetns("mfr");
  const server = await tempNetns("mfs");
  try {
    const ip = (ns: TempNetns, ...args: string[]) => run(["ip", "-n", ns.name, ...args]);
    for (
      const [ns, peer, a, b] of [[client, router, "c0", "r0"], [
        server,
        router,
        "s0",
        "r1",
      ]] as const
    ) {
      await run([
        "ip",
        "link",
        "add",
        a,
        "netns",
        ns.name,
        "type",
        "veth",
        "peer",
        b,
        "netns",
        peer.name,
      ]);
      await ip(ns, "link", "set", a, "up");
      await ip(peer, "link", "set", b, "up");
    }
    await ip(client, "addr", "add", `${LAB.client[4]}/24`, "dev", "c0");
    await ip(client, "addr", "add", `${LAB.client[6]}/64`, "dev", "c0", "nodad");
    await ip(router, "addr", "add", `${LAB.router[4]}/24`, "dev", "r0");
    await ip(router, "addr", "add", `${LAB.router[6]}/64`, "dev", "r0", "nodad");
    await ip(router, "addr", "add", `${LAB.routerOut[4]}/24`, "dev", "r1");
    await ip(router, "addr", "add", `${LAB.routerOut[6]}/64`, "dev", "r1", "nodad");
    await ip(server, "addr", "add", `${LAB.server[4]}/24`, "dev", "s0");
    await ip(server, "addr", "add", `${LAB.server[6]}/64`, "dev", "s0", "nodad");
    await ip(client, "route", "add", "default", "via", LAB.router[4]);
    await ip(client, "-6", "route", "add", "default", "via", LAB.router[6]);
    await ip(server, "route", "add", "default", "via", LAB.routerOut[4]);
    await ip(server, "-6", "route", "add", "default", "via", LAB.routerOut[6]);
    for (const key of ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]) {
      await run(inNetns(router.path, ["sysctl", "-qw", `${key}=1`]));
    }
  } catch (err) {
    for (const ns of [client, router, server]) await ns[Symbol.asyncDispose]();
    throw err;
  }
  return {
    client,
    router,
    server,
    async [Symbol.asyncDispose]() {
      for (const ns of [client, router, server]) await ns[Symbol.asyncDispose]();
    },
  };
}

/** The per-target chain the lab's verdict maps jump to. */
export const LAB_CHAIN = "ing_lab";

/**
 * The router's table: the agent's shape (through the real renderer, flow log objects
 * included), the server's addresses isolated for ingress by `decider`.
 */
export function labTable(
  decider: FlowDecider,
  rate: number,
  opts: { group?: number; incremental?: boolean } = {},
): string {
  const map = (f: 4 | 6) => ({
    kind: "map" as const,
    type: `ipv${f}_addr : verdict`,
    interval: false,
    elements: new Map([[LAB.server[f], `${LAB.server[f]} : jump ${LAB_CHAIN}`]]),
  });
  const log = flowLogObjects(rate);
  const table: NftTable = {
    name: `${NFT_TABLE.family} ${NFT_TABLE.name}`,
    counters: ["ingress_dropped", ...log.counters],
    limits: log.limits,
    sets: new Map([["ingress4", map(4)], ["ingress6", map(6)], ...log.sets]),
    chains: new Map([
      [LAB_CHAIN, {
        rules: [...flowLogRules(decider, opts), "counter name ingress_dropped drop"],
      }],
      ["forward", {
        decl: "type filter hook forward priority filter; policy accept;",
        rules: [
          "ct state established,related accept",
          "ip daddr vmap @ingress4",
          "ip6 daddr vmap @ingress6",
        ],
      }],
    ]),
  };
  // The agent's two ways: a difference from what the kernel holds (here: an empty table), the
  // objects added before the rules that use them; or the whole table.
  if (opts.incremental) {
    return `table ${table.name} {}
` + renderTableChange(emptyTable(table.name), table);
  }
  return renderFullTable(table);
}

/** Loads `text` with `nft -f -` in `ns`. */
export async function loadTable(ns: TempNetns, text: string): Promise<void> {
  await run(inNetns(ns.path, ["nft", "-f", "-"]), { stdin: text });
}

/** A named counter's packets in the agent's table in `ns`. */
export async function counterPackets(ns: TempNetns, name: string): Promise<number> {
  const out = await run(
    inNetns(ns.path, ["nft", "-j", "list", "counter", NFT_TABLE.family, NFT_TABLE.name, name]),
  );
  const items = JSON.parse(out).nftables as { counter?: { packets: number } }[];
  return items.find((i) => i.counter)?.counter?.packets ?? 0;
}

/** The elements of a set in the agent's table in `ns` (the seen sets: the kernel's own). */
export async function setElements(ns: TempNetns, set: string): Promise<number> {
  const out = await runOutput(
    inNetns(ns.path, ["nft", "-j", "list", "set", NFT_TABLE.family, NFT_TABLE.name, set]),
  );
  if (out.code !== 0) return 0;
  const items = JSON.parse(out.stdout).nftables as { set?: { elem?: unknown[] } }[];
  return items.find((i) => i.set)?.set?.elem?.length ?? 0;
}

const SENDER = new URL("./flow_sender.ts", import.meta.url).pathname;

/** Runs the sender in `ns` (see flow_sender.ts); resolves with what it reports. */
export async function sendFlows(
  ns: TempNetns,
  args: readonly string[],
): Promise<{ sent: number; ms: number }> {
  const out = await run(inNetns(ns.path, [
    Deno.execPath(),
    "run",
    "-A",
    "--unstable-net",
    "--no-check",
    "--no-config",
    "--no-lock",
    SENDER,
    ...args,
  ]));
  return JSON.parse(out.trim().split("\n").at(-1)!);
}
