// `mycni-init flows`: lines for people, JSON lines with --json, --follow until stopped, and the
// exit code, against a stand-in agent serving the real /flows handler.
import type { NflogPacket } from "../../../lib/net/nflog.ts";
import { FlowLog, type FlowRecord, flowsResponse } from "../../../lib/node/flow_log.ts";
import { formatFlow, runFlows } from "../../../lib/node/flows_cli.ts";
import { flowLogIndex, flowLogPrefix } from "../../../lib/policy/flow_log_rules.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const DECIDER = { direction: "ingress" as const, policies: ["y/deny"] };
const index = flowLogIndex([DECIDER]);
const attribution = () => ({
  podOf: (ip: string) =>
    ({ "10.244.1.2": "x/a", "10.244.2.3": "y/b" } as Record<string, string>)[ip],
  decider: (id: string) => index.get(id),
});
const PACKET: NflogPacket = {
  prefix: flowLogPrefix(DECIDER),
  time: Date.UTC(2025, 0, 2, 3, 4, 5, 678),
  family: 4,
  src: "10.244.1.2",
  dst: "10.244.2.3",
  proto: 6,
  sport: 40000,
  dport: 80,
};

Deno.test("formatFlow() says when, the verdict, direction, who to whom, and why", () => {
  const r: FlowRecord = {
    time: "2025-01-02T03:04:05.678Z",
    verdict: "deny",
    direction: "ingress",
    src: "10.244.1.2",
    dst: "10.244.2.3",
    proto: "TCP",
    dport: 80,
    srcPod: "x/a",
    dstPod: "y/b",
    policies: ["y/deny"],
  };
  assertEquals(
    formatFlow(r),
    "2025-01-02T03:04:05.678Z deny ingress TCP x/a 10.244.1.2 -> y/b 10.244.2.3:80 by y/deny",
  );
  assertEquals(
    formatFlow({
      time: r.time,
      verdict: "deny",
      direction: "egress",
      src: "fd00::2",
      dst: "fd00::3",
      proto: "UDP",
      dport: 53,
    }),
    "2025-01-02T03:04:05.678Z deny egress UDP fd00::2 -> [fd00::3]:53 (policy unknown: the state changed)",
  );
});

Deno.test("runFlows() prints the agent's records, as JSON with --json, exit 2 without an agent", async () => {
  const log = new FlowLog({ rate: 100, attribution });
  log.add(PACKET);
  log.add({ ...PACKET, dport: 81 });
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req, info) => flowsResponse(req, info, log),
  );
  const args = {
    follow: false,
    json: false,
    healthAddr: { hostname: "127.0.0.1", port: server.addr.port },
  };
  const lines: string[] = [];
  assertEquals(await runFlows(args, (l) => lines.push(l)), 0);
  assertEquals(lines.length, 2);
  assert(lines[1].endsWith("x/a 10.244.1.2 -> y/b 10.244.2.3:81 by y/deny"), lines[1]);
  const json: string[] = [];
  assertEquals(await runFlows({ ...args, json: true }, (l) => json.push(l)), 0);
  assertEquals(json.map((l) => JSON.parse(l).dport), [80, 81]);
  assertEquals(JSON.parse(json[0]), log.recent()[0]);
  await server.shutdown();
  const err: string[] = [];
  assertEquals(await runFlows(args, (l) => err.push(l)), 2);
  assert(err[0].startsWith("mycni-init flows: cannot reach the agent"), err[0]);
});

Deno.test("runFlows() --follow prints new records as they come, until stopped", async () => {
  const log = new FlowLog({ rate: 100, attribution });
  log.add(PACKET);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req, info) => flowsResponse(req, info, log),
  );
  const stop = new AbortController();
  const lines: string[] = [];
  let seen: () => void;
  const second = new Promise<void>((r) => seen = r);
  const run = runFlows(
    { follow: true, json: true, healthAddr: { hostname: "127.0.0.1", port: server.addr.port } },
    (l) => {
      lines.push(l);
      if (lines.length === 2) seen();
    },
    stop.signal,
  );
  while (log.followers === 0) await new Promise((r) => setTimeout(r, 10));
  log.add({ ...PACKET, dport: 443 });
  await second;
  assertEquals(lines.map((l) => JSON.parse(l).dport), [80, 443]);
  stop.abort();
  assertEquals(await run, 0);
  log.close();
  await server.shutdown();
});

Deno.test("runFlows() exits 2 with the agent's reason when the flow log is off", async () => {
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req, info) => flowsResponse(req, info, undefined),
  );
  const lines: string[] = [];
  const args = {
    follow: false,
    json: false,
    healthAddr: { hostname: "127.0.0.1", port: server.addr.port },
  };
  assertEquals(await runFlows(args, (l) => lines.push(l)), 2);
  assertEquals(lines, [
    "mycni-init flows: the agent cannot answer: the flow log is off (--flow-log none)",
  ]);
});
