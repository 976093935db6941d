import { deepStrictEqual as assertEquals } from "node:assert/strict";
import type { NodeInfo } from "../../../lib/kube/node.ts";
import {
  createScheduler,
  newerVersion,
  RESYNC_MS,
  RETRY_FIRST_MS,
  type Timers,
} from "../../../lib/node/scheduler.ts";
import type { ClusterState, RunOptions } from "../../../lib/node/sync.ts";

const N1: NodeInfo = { name: "n1", ips: ["192.0.2.11"], podCIDRs: ["10.244.1.0/24"] };
const NODES = new Map([["n1", N1]]);

/** A reconciler whose runs end when the test says, with the result it says. */
function fakeSync() {
  const runs: { state: ClusterState; opts: RunOptions; end: (ok: boolean) => void }[] = [];
  return {
    runs,
    run(state: ClusterState, opts: RunOptions) {
      return new Promise<boolean>((end) => runs.push({ state, opts, end }));
    },
    /** Ends run `i` and lets the scheduler see it. */
    async end(i: number, ok: boolean) {
      runs[i].end(ok);
      for (let k = 0; k < 5; k++) await Promise.resolve();
    },
  };
}

/** A clock that only moves when the test fires its timers. */
function fakeTimers() {
  let next = 1;
  const pending = new Map<number, { fn: () => void; ms: number }>();
  const timers: Timers = {
    setTimeout(fn, ms) {
      pending.set(next, { fn, ms });
      return next++;
    },
    clearTimeout(id) {
      pending.delete(id as number);
    },
  };
  return {
    timers,
    /** The delays of the timers waiting. */
    delays: () => [...pending.values()].map((t) => t.ms),
    fire() {
      const all = [...pending.entries()];
      pending.clear();
      for (const [, t] of all) t.fn();
    },
  };
}

const policyMaps = () => ({
  pods: new Map(),
  namespaces: new Map(),
  policies: new Map(),
  clusterPolicies: new Map(),
});

Deno.test("createScheduler() runs nothing before the node list is known", async () => {
  const sync = fakeSync();
  const s = createScheduler(sync, () => {}, fakeTimers().timers);
  s.resync();
  s.policy(policyMaps());
  assertEquals(sync.runs.length, 0);
  s.nodes(NODES, true);
  assertEquals(sync.runs.length, 1);
  assertEquals(sync.runs[0].opts, { full: true, nodesChanged: true });
  await sync.end(0, true);
});

Deno.test("createScheduler() coalesces requests during a run into one more run over the newest state", async () => {
  const sync = fakeSync();
  const s = createScheduler(sync, () => {}, fakeTimers().timers);
  s.nodes(NODES, false);
  assertEquals(sync.runs.length, 1);
  const n2 = new Map([...NODES, ["n2", { ...N1, name: "n2", ips: ["192.0.2.12"] }]]);
  s.nodes(n2, false);
  s.resync();
  s.policy(policyMaps());
  assertEquals(sync.runs.length, 1, "a second run started while one was running");
  await sync.end(0, true);
  assertEquals(sync.runs.length, 2);
  assertEquals(sync.runs[1].opts, { full: true, nodesChanged: true });
  assertEquals([...sync.runs[1].state.nodes.keys()], ["n1", "n2"]);
  assertEquals(sync.runs[1].state.policy !== undefined, true);
  await sync.end(1, true);
  assertEquals(sync.runs.length, 2);
  // A policy event with the same node list: nodesChanged false, and the same node map object.
  s.policy({ pods: new Map() });
  assertEquals(sync.runs[2].opts, { full: false, nodesChanged: false });
  assertEquals(sync.runs[2].state.nodes, sync.runs[1].state.nodes);
  await sync.end(2, true);
});

Deno.test("createScheduler() works on copies the informers' later changes do not reach", async () => {
  const sync = fakeSync();
  const s = createScheduler(sync, () => {}, fakeTimers().timers);
  const pods = new Map<string, never>();
  s.policy({ ...policyMaps(), pods });
  s.nodes(NODES, true);
  pods.set("x/a", undefined as never);
  assertEquals(sync.runs[0].state.policy!.pods.size, 0);
  await sync.end(0, true);
});

Deno.test("createScheduler() holds policy back until ClusterNetworkPolicies are listed too", async () => {
  const sync = fakeSync();
  const reported: string[] = [];
  const s = createScheduler(sync, (rv) => reported.push(rv), fakeTimers().timers);
  s.nodes(NODES, true);
  const { clusterPolicies: _, ...networkPolicyOnly } = policyMaps();
  s.policy(networkPolicyOnly);
  s.progress("5");
  await sync.end(0, true);
  assertEquals(sync.runs[1].state.policy, undefined, "enforced before the CNPs were listed");
  await sync.end(1, true);
  assertEquals(reported, []);
  // Listed (or not served: the informer hands over an empty map): policy is whole.
  const cnps = new Map([["deny", undefined as never]]);
  s.policy({ clusterPolicies: cnps });
  s.progress("6");
  assertEquals(sync.runs[2].state.policy?.clusterPolicies?.size, 1);
  cnps.clear();
  assertEquals(sync.runs[2].state.policy?.clusterPolicies?.size, 1, "a copy, not the live map");
  await sync.end(2, true);
  assertEquals(reported, ["6"]);
});

Deno.test("createScheduler() retries a failed run with backoff doubling up to the resync period", async () => {
  const sync = fakeSync();
  const clock = fakeTimers();
  const s = createScheduler(sync, () => {}, clock.timers);
  s.nodes(NODES, false);
  const delays: number[] = [];
  for (let i = 0; i < 7; i++) {
    await sync.end(i, false);
    delays.push(...clock.delays());
    clock.fire();
    assertEquals(sync.runs[i + 1].opts.full, true, "a retry re-verifies everything");
  }
  assertEquals(delays, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
  assertEquals(delays[0], RETRY_FIRST_MS);
  assertEquals(delays.at(-1), RESYNC_MS);
  // Success resets the backoff and cancels nothing pending.
  await sync.end(7, true);
  assertEquals(clock.delays(), []);
  s.resync();
  await sync.end(8, false);
  assertEquals(clock.delays(), [500]);
  await s.idle();
  assertEquals(clock.delays(), [], "idle() cancels the pending retry");
});

Deno.test("createScheduler() reports the policy resourceVersion only once a good run covers it", async () => {
  const sync = fakeSync();
  const clock = fakeTimers();
  const reported: string[] = [];
  const s = createScheduler(sync, (rv) => reported.push(rv), clock.timers);
  s.nodes(NODES, true);
  s.progress("5"); // nodes only: policy not listed, nothing is enforced yet
  await sync.end(0, true);
  assertEquals(reported, []);
  s.policy(policyMaps());
  s.progress("7");
  assertEquals(reported, [], "reported while the run covering it is still running");
  await sync.end(1, true);
  assertEquals(reported, ["7"]);
  // Nothing running, nothing to retry: a resourceVersion seen (a change that asked for no run)
  // is held by the kernel already. An older one does not move it back.
  s.progress("9");
  s.progress("8");
  assertEquals(reported, ["7", "9", "9"]);
  // A failed run reports nothing, nor does progress while its retry is pending.
  s.policy({ pods: new Map() });
  s.progress("12");
  await sync.end(2, false);
  s.progress("13");
  assertEquals(reported, ["7", "9", "9"]);
  clock.fire();
  await sync.end(3, true);
  assertEquals(reported, ["7", "9", "9", "13"]);
});

Deno.test("newerVersion() compares etcd revisions as numbers, others as text", () => {
  assertEquals(newerVersion("10", "9"), true);
  assertEquals(newerVersion("9", "10"), false);
  assertEquals(newerVersion("99999999999999999999", "99999999999999999998"), true);
  assertEquals(newerVersion("b", "a"), true);
  assertEquals(newerVersion("5", ""), true);
});
