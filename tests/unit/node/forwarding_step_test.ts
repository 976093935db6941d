import { deepStrictEqual as assertEquals } from "node:assert/strict";
import type { Family } from "../../../lib/ip/cidr.ts";
import type { NodeInfo } from "../../../lib/kube/node.ts";
import type { OwnedChain } from "../../../lib/net/iptables.ts";
import { createForwardChainStep, createForwardingStep } from "../../../lib/node/forwarding_step.ts";
import { RECHECK_MS } from "../../../lib/node/install_step.ts";
import { fakeLog } from "./fake_log.ts";

const V4: NodeInfo = { name: "n1", ips: ["192.0.2.11"], podCIDRs: ["10.244.1.0/24"] };
const DUAL: NodeInfo = { ...V4, podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"] };

/** /proc/sys in memory; keys under net/bridge exist only while `brNetfilter` is loaded. */
function fakeSysctl(brNetfilter: boolean) {
  const values = new Map<string, string>();
  const sysctl = (key: string, value: string) => {
    if (key.startsWith("net/bridge/") && !brNetfilter) {
      return Promise.reject(new Deno.errors.NotFound(`/proc/sys/${key}`));
    }
    const changed = values.get(key) !== value;
    values.set(key, value);
    return Promise.resolve(changed);
  };
  return { values, sysctl };
}

Deno.test("createForwardingStep() enables forwarding for the node's families, logging each change", async () => {
  const proc = fakeSysctl(true);
  const log = fakeLog();
  const step = createForwardingStep(false, log, proc.sysctl);
  assertEquals(await step.run(V4), {});
  assertEquals([...proc.values.keys()], ["net/ipv4/ip_forward"]);
  assertEquals(await step.run(DUAL), {});
  assertEquals([...proc.values.keys()], ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"]);
  assertEquals(log.lines("sysctl set").map((f) => f.key), [
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
  ]);
});

Deno.test("createForwardingStep() with NetworkPolicy sends bridged traffic through netfilter", async () => {
  const proc = fakeSysctl(true);
  const step = createForwardingStep(true, fakeLog(), proc.sysctl);
  assertEquals(await step.run(V4), { brNetfilter: true });
  assertEquals(proc.values.get("net/bridge/bridge-nf-call-iptables"), "1");
  assertEquals(proc.values.get("net/bridge/bridge-nf-call-ip6tables"), "1");
});

Deno.test("createForwardingStep() reports a missing br_netfilter as a problem, logged once", async () => {
  const proc = fakeSysctl(false);
  const log = fakeLog();
  const step = createForwardingStep(true, log, proc.sysctl);
  const report = await step.run(V4);
  assertEquals(report.brNetfilter, false);
  assertEquals(report.problem?.startsWith("br_netfilter is not loaded"), true);
  assertEquals((await step.run(V4)).brNetfilter, false);
  assertEquals(log.lines("NetworkPolicy is incomplete").length, 1);
  assertEquals(proc.values.get("net/ipv4/ip_forward"), "1", "forwarding is on all the same");
});

Deno.test("createForwardChainStep() writes the chain per family when its rules change, and re-checks it periodically", async () => {
  const calls: [Family, string[]][] = [];
  let now = 1_000_000;
  const iptables = (family: Family, chains: readonly OwnedChain[]) => {
    calls.push([family, chains.flatMap((c) => c.rules)]);
    return Promise.resolve(chains.map((c) => `${c.table}/${c.chain}`));
  };
  const log = fakeLog();
  const step = createForwardChainStep(log, iptables, () => now);
  const cluster = ["10.244.0.0/16", "fd00:10:244::/48"];
  await step.run(cluster, DUAL, true);
  assertEquals(calls.map(([f]) => f), [4, 6]);
  assertEquals(calls[0][1], [
    "-A MYCNI-FWD -s 10.244.0.0/16 -j ACCEPT",
    "-A MYCNI-FWD -d 10.244.0.0/16 -j ACCEPT",
  ]);
  await step.run(cluster, DUAL, true);
  await step.run(cluster, DUAL, false);
  assertEquals(calls.length, 2, "rewrote an unchanged chain before the re-check period");
  await step.run(["10.244.0.0/15", "fd00:10:244::/48"], DUAL, false);
  assertEquals(calls.length, 3, "only the family whose rules changed");
  now += RECHECK_MS;
  await step.run(["10.244.0.0/15", "fd00:10:244::/48"], DUAL, true);
  assertEquals(calls.length, 5);
  assertEquals(log.lines("iptables chain synced").length, 5);
});
