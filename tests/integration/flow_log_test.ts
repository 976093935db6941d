// The flow log against the real kernel: a router namespace with a table shaped like the agent's
// drops a client's connection attempts to a server; the deny path's log rules hand the first
// packet of each flow to nfnetlink_log, where our subscriber reads the prefix, addresses,
// protocol and port. IPv4 and IPv6, TCP and UDP; once per flow (a SYN retransmit is not logged
// again); the per-node kernel limit; a receive queue overrun counted, not fatal.
import { type NflogPacket, NflogSubscriber } from "../../lib/net/nflog.ts";
import { FlowLog } from "../../lib/node/flow_log.ts";
import {
  FLOW_LOG_DROPPED_COUNTER,
  FLOW_LOG_GROUP,
  FLOW_SEEN_SET,
  flowLogIndex,
  flowLogPrefix,
} from "../../lib/policy/flow_log_rules.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import {
  counterPackets,
  type FlowLab,
  flowLab,
  LAB,
  labTable,
  loadTable,
  sendFlows,
  setElements,
} from "../harness/flow_lab.ts";
import { canRunPrivileged } from "../harness/netns.ts";

const DECIDER = { direction: "ingress" as const, policies: ["y/deny-all"] };

/** Subscribes in the lab's router, collecting packets until disposed. */
function collect(lab: FlowLab, opts: { rcvbuf?: number } = {}) {
  const sub = NflogSubscriber.open(FLOW_LOG_GROUP, { netns: lab.router.path, ...opts });
  const stop = new AbortController();
  const got: NflogPacket[] = [];
  const done = sub.run((p) => got.push(p), stop.signal);
  return {
    sub,
    got,
    async until(pred: () => boolean, ms = 5000): Promise<boolean> {
      const end = Date.now() + ms;
      while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      return pred();
    },
    async [Symbol.asyncDispose]() {
      stop.abort();
      await done;
      sub.close();
    },
  };
}

Deno.test({
  name: "a denied first packet reaches the subscriber with its prefix, addresses, proto and port",
  ignore: !canRunPrivileged,
}, async () => {
  await using lab = await flowLab();
  await loadTable(lab.router, labTable(DECIDER, 100));
  await using c = collect(lab);
  const flows = [
    { f: 4, proto: "tcp", port: 80 },
    { f: 6, proto: "tcp", port: 443 },
    { f: 4, proto: "udp", port: 53 },
    { f: 6, proto: "udp", port: 5353 },
  ] as const;
  // The TCP attempts wait 1.5 s: the kernel retransmits the SYN at 1 s, which must be dropped
  // again and not logged again.
  await Promise.all(
    flows.map((x) =>
      sendFlows(lab.client, [
        x.proto,
        "--to",
        LAB.server[x.f],
        "--port",
        String(x.port),
        "--wait",
        "1500",
      ])
    ),
  );
  assert(await c.until(() => c.got.length >= flows.length), `got ${c.got.length} packets`);
  await new Promise((r) => setTimeout(r, 300)); // anything more would have come by now
  for (const x of flows) {
    const mine = c.got.filter((p) => p.dport === x.port);
    assertEquals(mine.length, 1, `${x.proto} ${x.port}: once per flow`);
    const p = mine[0];
    assertEquals(
      [p.prefix, p.family, p.src, p.dst, p.proto, p.hook],
      [
        flowLogPrefix(DECIDER),
        x.f,
        LAB.client[x.f],
        LAB.server[x.f],
        x.proto === "tcp" ? 6 : 17,
        2,
      ],
    );
    assert(p.sport! > 1024, `sport ${p.sport}`);
  }
  assertEquals(c.got.length, flows.length);
  // Really dropped, retransmits too (two SYNs at least per TCP flow), and remembered as seen.
  assert(await counterPackets(lab.router, "ingress_dropped") >= 6, "the drops were counted");
  assertEquals(await counterPackets(lab.router, FLOW_LOG_DROPPED_COUNTER), 0);
  assertEquals(await setElements(lab.router, FLOW_SEEN_SET[4]), 2);
  assertEquals(await setElements(lab.router, FLOW_SEEN_SET[6]), 2);
  assertEquals(c.sub.stats, { packets: 4, overruns: 0, lost: 0, unparsed: 0 });

  // The records they become: named from the state, or unattributed once it no longer knows.
  const pods = new Map<string, string>([[LAB.client[4], "x/a"], [LAB.server[4], "y/b"]]);
  const index = flowLogIndex([DECIDER]);
  const known = new FlowLog({
    rate: 100,
    attribution: () => ({ podOf: (ip) => pods.get(ip), decider: (id) => index.get(id) }),
  });
  const r = known.add(c.got.find((p) => p.dport === 80)!)!;
  assertEquals([r.direction, r.proto, r.dport, r.srcPod, r.dstPod, r.policies], [
    "ingress",
    "TCP",
    80,
    "x/a",
    "y/b",
    ["y/deny-all"],
  ]);
  const stale = new FlowLog({
    rate: 100,
    attribution: () => ({ podOf: (ip) => pods.get(ip), decider: () => undefined }),
  });
  const s = stale.add(c.got.find((p) => p.dport === 80)!)!;
  assertEquals([s.direction, s.src, s.dst, s.srcPod, s.policies], [
    "ingress",
    LAB.client[4],
    LAB.server[4],
    undefined,
    undefined,
  ]);
});

Deno.test({
  name: "a burst of denied flows over the kernel's limit logs at most the rate, counts the rest",
  ignore: !canRunPrivileged,
}, async () => {
  await using lab = await flowLab();
  const RATE = 20, BURST = 400;
  await loadTable(lab.router, labTable(DECIDER, RATE, { incremental: true }));
  await using c = collect(lab);
  const { sent, ms } = await sendFlows(lab.client, [
    "udp",
    "--to",
    LAB.server[4],
    "--port",
    "10000",
    "--count",
    String(BURST),
  ]);
  assertEquals(sent, BURST);
  const dropped = await counterPackets(lab.router, "ingress_dropped");
  assertEquals(dropped, BURST);
  await new Promise((r) => setTimeout(r, 500)); // the kernel's last batch arrives
  const over = await counterPackets(lab.router, FLOW_LOG_DROPPED_COUNTER);
  // The bucket holds RATE at once, then refills at RATE a second while the burst lasts.
  const most = RATE + Math.ceil((RATE * ms) / 1000) + 1;
  console.log(
    `burst of ${BURST} in ${ms} ms at ${RATE}/s: ${c.got.length} logged, ${over} counted`,
  );
  assert(c.got.length >= RATE && c.got.length <= most, `${c.got.length} logged, at most ${most}`);
  assertEquals(c.got.length + over, BURST);
  assertEquals(new Set(c.got.map((p) => p.dport)).size, c.got.length);
});

Deno.test({
  name:
    "a receive queue overrun is counted (ENOBUFS and the gap in numbering), and reading goes on",
  ignore: !canRunPrivileged,
}, async () => {
  await using lab = await flowLab();
  await loadTable(lab.router, labTable(DECIDER, 1_000_000));
  // The smallest receive buffer the kernel allows, and nobody reading while the burst lands.
  using sub = NflogSubscriber.open(FLOW_LOG_GROUP, { netns: lab.router.path, rcvbuf: 1 });
  const BURST = 2000;
  await sendFlows(lab.client, [
    "udp",
    "--to",
    LAB.server[6],
    "--port",
    "20000",
    "--count",
    String(BURST),
  ]);
  await new Promise((r) => setTimeout(r, 300)); // the kernel's last batch is flushed
  const got: NflogPacket[] = [];
  while (sub.drain((p) => got.push(p))) { /* until empty */ }
  // One more flow after the overrun still arrives.
  await sendFlows(lab.client, ["udp", "--to", LAB.server[6], "--port", "9", "--count", "1"]);
  const stop = new AbortController();
  const reading = sub.run((p) => {
    got.push(p);
    if (p.dport === 9) stop.abort();
  }, stop.signal);
  await Promise.race([reading, new Promise((r) => setTimeout(r, 3000))]);
  stop.abort();
  await reading;
  console.log(`overrun: ${JSON.stringify(sub.stats)}`);
  assert(sub.stats.overruns >= 1, "ENOBUFS was seen and counted");
  assert(sub.stats.lost > 0, "the lost messages are counted");
  assertEquals(got.at(-1)?.dport, 9);
  assertEquals(sub.stats.packets + sub.stats.lost, BURST + 1);
  assertEquals(await counterPackets(lab.router, FLOW_LOG_DROPPED_COUNTER), 0);
});
