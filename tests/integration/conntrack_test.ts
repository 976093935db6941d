// Conntrack over ctnetlink against real flows: TCP and UDP, IPv4 and IPv6, from two client
// namespaces through a forwarding namespace (the node) to a server. The entries the dump lists
// are the ones `conntrack -L` lists; deleting by a client's addresses removes its entries and
// only those; a flow filter removes one flow's.
import {
  type ConntrackEntry,
  deleteConntrack,
  deleteConntrackEntries,
  deleteConntrackEntry,
  deleteConntrackList,
  listConntrack,
} from "../../lib/net/conntrack.ts";
import { run } from "../../lib/process/run.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import { type Child, spawnChild } from "../harness/child.ts";
import { canRunPrivileged, type TempNetns, tempNetns } from "../harness/netns.ts";

const PEER = new URL("../harness/flow_peer.ts", import.meta.url).pathname;
const DENO = Deno.execPath();
const PORT = 5001;

interface Host {
  readonly ns: TempNetns;
  readonly v4: string;
  readonly v6: string;
}

/** Client `a` and `c` and server `b`, each on its own link to router `r` (conntrack on). */
async function topology(stack: AsyncDisposableStack) {
  const r = stack.use(await tempNetns("mcct"));
  const host = async (n: number): Promise<Host> => {
    const ns = stack.use(await tempNetns("mcct"));
    const dev = `r${n}`;
    await run([
      "ip",
      "-n",
      r.name,
      "link",
      "add",
      dev,
      "type",
      "veth",
      "peer",
      "eth0",
      "netns",
      ns.name,
    ]);
    const [v4, v6] = [`10.81.${n}.2`, `fd81:${n}::2`];
    for (
      const [where, link, a4, a6] of [[ns, "eth0", v4, v6], [
        r,
        dev,
        `10.81.${n}.1`,
        `fd81:${n}::1`,
      ]] as const
    ) {
      await run(["ip", "-n", where.name, "addr", "add", `${a4}/24`, "dev", link]);
      await run(["ip", "-n", where.name, "addr", "add", `${a6}/64`, "dev", link, "nodad"]);
      await run(["ip", "-n", where.name, "link", "set", link, "up"]);
    }
    await run(["ip", "-n", ns.name, "route", "add", "default", "via", `10.81.${n}.1`]);
    await run(["ip", "-n", ns.name, "-6", "route", "add", "default", "via", `fd81:${n}::1`]);
    return { ns, v4, v6 };
  };
  const a = await host(1), b = await host(2), c = await host(3);
  await run(r.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]));
  // A ct expression in a forward chain turns conntrack on in the router's netns.
  await run(r.exec(["nft", "-f", "-"]), {
    stdin:
      "table inet t {\n  chain f {\n    type filter hook forward priority 0; policy accept;\n" +
      "    ct state established,related accept\n  }\n}\n",
  });
  return { r, a, b, c };
}

/** A flow peer in `ns`, resolved once it printed that it is ready. */
async function peer(stack: AsyncDisposableStack, ns: TempNetns, args: string[]): Promise<Child> {
  const child = await spawnChild(
    ns.exec([
      DENO,
      "run",
      "-A",
      "--unstable-net",
      "--no-check",
      "--no-config",
      "--no-lock",
      PEER,
      ...args,
    ]),
    { pipeStdio: true },
  );
  stack.use(child);
  const reader = child.process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => child.stop("SIGKILL"), 20000);
  try {
    while (!text.includes('"ready"')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`flow peer ${args.join(" ")} exited before it was ready`);
      text += value;
    }
  } finally {
    clearTimeout(timer);
  }
  reader.releaseLock();
  return child;
}

/** The flows of a client to the server: TCP and UDP, both families. */
function flowsTo(b: Host): string[] {
  return [
    `tcp:${b.v4}:${PORT}`,
    `tcp:${b.v6}:${PORT}`,
    `udp:${b.v4}:${PORT}`,
    `udp:${b.v6}:${PORT}`,
  ];
}

/** (proto src dst dport) of every flow an entry list holds from `from`, sorted. */
function flowsOf(entries: ConntrackEntry[], from: Host): string[] {
  return entries
    .filter((e) => e.orig.src === from.v4 || e.orig.src === from.v6)
    .map((e) => `${e.orig.proto} ${e.orig.src} ${e.orig.dst} ${e.orig.dport}`)
    .sort();
}

/** `conntrack -L` of both families as (proto src dst sport dport) lines, sorted. */
async function conntrackCli(r: TempNetns): Promise<string[]> {
  const out: string[] = [];
  for (const f of ["ipv4", "ipv6"]) {
    const text = await run(r.exec(["conntrack", "-L", "-f", f]));
    for (const line of text.split("\n")) {
      const m = /^(\w+)\s+(\d+)\s.*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)/.exec(line);
      if (m) out.push(`${m[2]} ${m[3]} ${m[4]} ${m[5]} ${m[6]}`);
    }
  }
  return out.sort();
}

function asCli(entries: ConntrackEntry[]): string[] {
  return entries
    .filter((e) => e.orig.sport !== undefined)
    .map((e) => `${e.orig.proto} ${e.orig.src} ${e.orig.dst} ${e.orig.sport} ${e.orig.dport}`)
    .sort();
}

const hasConntrackCli = await new Deno.Command("conntrack", { args: ["--version"] }).output()
  .then((o) => o.success).catch(() => false);

Deno.test({
  name:
    "deleteConntrackEntries() removes a pod's TCP and UDP entries of both families, and only those",
  ignore: !canRunPrivileged,
}, async () => {
  await using stack = new AsyncDisposableStack();
  const { r, a, b, c } = await topology(stack);
  await peer(stack, b.ns, ["serve", String(PORT)]);
  await peer(stack, a.ns, ["connect", ...flowsTo(b)]);
  await peer(stack, c.ns, ["connect", ...flowsTo(b)]);
  const expected = (h: Host) =>
    [
      `6 ${h.v4} ${b.v4} ${PORT}`,
      `6 ${h.v6} ${b.v6} ${PORT}`,
      `17 ${h.v4} ${b.v4} ${PORT}`,
      `17 ${h.v6} ${b.v6} ${PORT}`,
    ].sort();
  const before = listConntrack({}, { netns: r.path });
  assertEquals(flowsOf(before, a), expected(a));
  assertEquals(flowsOf(before, c), expected(c));
  if (hasConntrackCli) assertEquals(asCli(before), await conntrackCli(r));
  // The reply tuple names the server's side: a filter on the server's address finds both.
  assertEquals(listConntrack({ addresses: [b.v6] }, { netns: r.path }).length, 4);

  const deleted = deleteConntrackEntries([a.v4, a.v6], { netns: r.path });
  assertEquals(deleted, 4);
  const after = listConntrack({}, { netns: r.path });
  assertEquals(flowsOf(after, a), []);
  assertEquals(flowsOf(after, c), expected(c));
  // c's entries are the same entries as before, not new ones.
  const ids = (l: ConntrackEntry[]) =>
    l.filter((e) => e.orig.src.startsWith("10.81.3.") || e.orig.src.startsWith("fd81:3:")).map((
      e,
    ) => e.id).sort();
  assertEquals(ids(after), ids(before));
  if (hasConntrackCli) assertEquals(asCli(after), await conntrackCli(r));
  assertEquals(deleteConntrackEntries([a.v4, a.v6], { netns: r.path }), 0);
});

Deno.test({
  name:
    "deleteConntrack() with a flow filter removes that flow's entry; deleteConntrackEntry() of a gone one is false",
  ignore: !canRunPrivileged,
}, async () => {
  await using stack = new AsyncDisposableStack();
  const { r, a, b } = await topology(stack);
  await peer(stack, b.ns, ["serve", String(PORT)]);
  await peer(stack, a.ns, ["connect", ...flowsTo(b)]);
  const n = deleteConntrack({ src: a.v6, dst: b.v6, proto: "tcp", dport: PORT }, { netns: r.path });
  assertEquals(n, 1);
  const left = listConntrack({ addresses: [a.v4, a.v6] }, { netns: r.path });
  assertEquals(flowsOf(left, a), [
    `17 ${a.v4} ${b.v4} ${PORT}`,
    `17 ${a.v6} ${b.v6} ${PORT}`,
    `6 ${a.v4} ${b.v4} ${PORT}`,
  ]);
  const udp4 = left.find((e) => e.orig.proto === 17 && e.family === 4)!;
  assert(deleteConntrackEntry(udp4, { netns: r.path }), "the UDP entry was there");
  assert(!deleteConntrackEntry(udp4, { netns: r.path }), "deleted twice");
  // An entry with the same tuple but another id (a newer connection) is not the one deleted.
  const tcp4 = left.find((e) => e.orig.proto === 6)!;
  assert(!deleteConntrackEntry({ ...tcp4, id: (tcp4.id ?? 0) + 1 }, { netns: r.path }));
  assertEquals(listConntrack({ src: a.v4, proto: "tcp" }, { netns: r.path }).length, 1);
});

Deno.test({
  name:
    "deleteConntrackList() deletes the listed entries in pipelined batches and counts the gone ones out",
  ignore: !canRunPrivileged,
}, async () => {
  await using stack = new AsyncDisposableStack();
  const { r, a, b, c } = await topology(stack);
  await peer(stack, b.ns, ["serve", String(PORT)]);
  await peer(stack, a.ns, ["connect", ...flowsTo(b)]);
  await peer(stack, c.ns, ["connect", ...flowsTo(b)]);
  const ofA = listConntrack({ addresses: [a.v4, a.v6] }, { netns: r.path });
  assertEquals(ofA.length, 4);
  assert(deleteConntrackEntry(ofA[0], { netns: r.path }));
  // One already gone: three deleted, and no error for it.
  assertEquals(deleteConntrackList(ofA, { netns: r.path }), 3);
  assertEquals(listConntrack({ addresses: [a.v4, a.v6] }, { netns: r.path }).length, 0);
  assertEquals(flowsOf(listConntrack({}, { netns: r.path }), c).length, 4);
  assertEquals(deleteConntrackList([], { netns: r.path }), 0);
});
