// The flow log: records from logged packets and the agent's state, unattributed ones kept, the
// per-node rate, the ring's bound under a flood, the log lines, /metrics and /flows.
import { createLogger } from "../../../lib/log/logger.ts";
import type { NflogPacket } from "../../../lib/net/nflog.ts";
import {
  FlowLog,
  flowRecord,
  flowsResponse,
  renderFlowLogMetrics,
} from "../../../lib/node/flow_log.ts";
import {
  type FlowDecider,
  flowLogIndex,
  flowLogPrefix,
} from "../../../lib/policy/flow_log_rules.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const INGRESS: FlowDecider = { direction: "ingress", policies: ["y/deny-all"] };
const PODS = new Map([["10.244.1.2", "x/a"], ["10.244.2.3", "y/b"], ["fd00::3", "y/b"]]);

function state(deciders: FlowDecider[] = [INGRESS]) {
  const index = flowLogIndex(deciders);
  return { podOf: (ip: string) => PODS.get(ip), decider: (id: string) => index.get(id) };
}

function packet(parts: Partial<NflogPacket> = {}): NflogPacket {
  return {
    prefix: flowLogPrefix(INGRESS),
    time: Date.UTC(2025, 0, 2, 3, 4, 5, 678),
    family: 4,
    src: "10.244.1.2",
    dst: "10.244.2.3",
    proto: 6,
    sport: 40000,
    dport: 80,
    ...parts,
  };
}

Deno.test("flowRecord() names the pods and the deciding policies, with the contract's fields", () => {
  assertEquals(flowRecord(packet(), state()), {
    time: "2025-01-02T03:04:05.678Z",
    verdict: "deny",
    direction: "ingress",
    src: "10.244.1.2",
    dst: "10.244.2.3",
    proto: "TCP",
    dport: 80,
    srcPod: "x/a",
    dstPod: "y/b",
    policies: ["y/deny-all"],
  });
  // An address that is no pod (the outside world) has no pod field; no port, no dport.
  const r = flowRecord(packet({ src: "203.0.113.9", proto: 1, dport: undefined }), state());
  assertEquals([r.srcPod, r.dstPod, r.proto, "dport" in r], [undefined, "y/b", "ICMP", false]);
  assertEquals(flowRecord(packet({ proto: 58 }), state()).proto, "ICMPv6");
  assertEquals(flowRecord(packet({ proto: 47 }), state()).proto, "47");
});

Deno.test("flowRecord() keeps a packet it cannot attribute, without pods and policies", () => {
  // The policy changed after the kernel logged: the state holds that decider no more.
  const stale = flowRecord(packet(), state([]));
  assertEquals(stale, {
    time: "2025-01-02T03:04:05.678Z",
    verdict: "deny",
    direction: "ingress",
    src: "10.244.1.2",
    dst: "10.244.2.3",
    proto: "TCP",
    dport: 80,
  });
  // Not our prefix at all, or no readable addresses: still a record.
  const foreign = flowRecord(packet({ prefix: "someone else" }), state());
  assertEquals([foreign.direction, foreign.policies, foreign.srcPod], [
    undefined,
    undefined,
    undefined,
  ]);
  const unread = flowRecord(packet({ family: undefined, src: "", dst: "", proto: 0 }), state());
  assertEquals([unread.src, unread.verdict, unread.proto], ["", "deny", "0"]);
});

Deno.test("FlowLog.add() records at most `rate` a second per node and counts the rest", () => {
  let now = 0;
  const log = new FlowLog({ rate: 10, attribution: () => state(), now: () => now });
  let made = 0;
  for (let i = 0; i < 100; i++) if (log.add(packet({ sport: i }))) made++;
  assertEquals([made, log.counters.records, log.counters.dropped], [10, 10, 90]);
  now += 500; // half a second: five more
  for (let i = 0; i < 100; i++) log.add(packet());
  assertEquals(log.counters.records, 15);
  now += 60_000; // a long quiet spell refills to the burst, not beyond
  for (let i = 0; i < 100; i++) log.add(packet());
  assertEquals(log.counters.records, 25);
  assertEquals(log.counters.dropped, 90 + 95 + 90);
});

Deno.test("FlowLog keeps only the last 1000 records however many arrive", () => {
  let now = 0;
  const log = new FlowLog({ rate: 1_000_000, attribution: () => state(), now: () => now });
  for (let i = 0; i < 50_000; i++) {
    now += 1;
    log.add(packet({ sport: i % 65536, time: i }));
  }
  const kept = log.recent();
  assertEquals(kept.length, 1000);
  assertEquals(log.counters.records, 50_000);
  assertEquals(kept[0].time, new Date(49_000).toISOString());
  assertEquals(kept[999].time, new Date(49_999).toISOString());
  assertEquals(log.recent(49_997).map((r) => r.time), [
    new Date(49_998).toISOString(),
    new Date(49_999).toISOString(),
  ]);
});

Deno.test("FlowLog writes each record as one JSON line to the agent's log", () => {
  const lines: string[] = [];
  const log = new FlowLog({
    rate: 5,
    attribution: () => state(),
    log: createLogger((l) => lines.push(l)),
  });
  log.add(packet());
  assertEquals(lines.length, 1);
  const line = JSON.parse(lines[0]);
  assertEquals([line.msg, line.verdict, line.direction, line.dstPod, line.policies], [
    "flow",
    "deny",
    "ingress",
    "y/b",
    ["y/deny-all"],
  ]);
});

Deno.test("FlowLog asks for the attribution per packet: a change of state is seen at once", () => {
  let current = state([]);
  const log = new FlowLog({ rate: 5, attribution: () => current });
  assertEquals(log.add(packet())?.policies, undefined);
  current = state();
  assertEquals(log.add(packet())?.policies, ["y/deny-all"]);
});

Deno.test("renderFlowLogMetrics() counts records, and the agent's, the kernel's and lost drops", () => {
  const text = renderFlowLogMetrics({ records: 7, dropped: 2 }, { kernelDropped: 5, lost: 1 });
  assert(
    text.includes("# TYPE mycni_flow_log_records_total counter\nmycni_flow_log_records_total 7\n"),
  );
  assert(text.includes("\nmycni_flow_log_dropped_total 8\n"));
  assert(
    renderFlowLogMetrics({ records: 0, dropped: 0 }).includes("mycni_flow_log_dropped_total 0"),
  );
});

const LOOPBACK = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
} as unknown as Deno.ServeHandlerInfo;
const REMOTE = {
  remoteAddr: { transport: "tcp", hostname: "192.0.2.1", port: 1 },
} as unknown as Deno.ServeHandlerInfo;

Deno.test("flowsResponse() answers loopback only, 404 when off, JSON lines with ?since=", async () => {
  const log = new FlowLog({ rate: 100, attribution: () => state() });
  for (let i = 1; i <= 3; i++) log.add(packet({ time: i * 1000 }));
  const get = (q: string, info = LOOPBACK) =>
    flowsResponse(new Request(`http://127.0.0.1/flows${q}`), info, log);
  assertEquals(get("", REMOTE).status, 403);
  const off = flowsResponse(new Request("http://127.0.0.1/flows"), LOOPBACK, undefined);
  assertEquals(off.status, 404);
  assertEquals(get("?since=yesterday").status, 400);
  const all = await get("").text();
  assertEquals(
    all.trim().split("\n").map((l) => JSON.parse(l).time),
    [1, 2, 3].map((s) => new Date(s * 1000).toISOString()),
  );
  assertEquals((await get("?since=2000").text()).trim().split("\n").length, 1);
  assertEquals(
    (await get(`?since=${new Date(1000).toISOString()}`).text()).trim().split("\n").length,
    2,
  );
});

Deno.test("flowsResponse() ?follow=1 sends the kept records, then each new one, until closed", async () => {
  const log = new FlowLog({ rate: 100, attribution: () => state() });
  log.add(packet({ dport: 1 }));
  const res = flowsResponse(new Request("http://127.0.0.1/flows?follow=1"), LOOPBACK, log);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  assertEquals(JSON.parse((await reader.read()).value!).dport, 1);
  log.add(packet({ dport: 2 }));
  assertEquals(JSON.parse((await reader.read()).value!).dport, 2);
  assertEquals(log.followers, 1);
  log.close();
  assertEquals((await reader.read()).done, true);
  assertEquals(log.followers, 0);
});

Deno.test("flowsResponse() ends a follower that stops reading instead of queueing for it", async () => {
  const log = new FlowLog({ rate: 1_000_000, attribution: () => state() });
  const res = flowsResponse(new Request("http://127.0.0.1/flows?follow=1"), LOOPBACK, log);
  for (let i = 0; i < 5000; i++) log.add(packet({ sport: i }));
  assertEquals(log.followers, 0);
  const text = await res.text();
  const lines = text.trim().split("\n");
  assertEquals(JSON.parse(lines.at(-1)!), { error: "follower too slow" });
  assert(lines.length <= 2001, `${lines.length} lines queued`);
  // A reader that goes away is unsubscribed.
  const gone = flowsResponse(new Request("http://127.0.0.1/flows?follow=1"), LOOPBACK, log);
  assertEquals(log.followers, 1);
  await gone.body!.cancel();
  assertEquals(log.followers, 0);
});
