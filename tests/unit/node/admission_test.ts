// The agent's admission (lib/node/admission.ts) against a fake scheduler, table and conntrack:
// when an admit is answered (the fast path's batch, or a reconcile whose snapshot holds the
// binding), the bounded wait for an unknown Pod, release, the IPAM store read again, and a burst
// of admits against the real scheduler.
import type { PodInfo } from "../../../lib/kube/policy_objects.ts";
import type { ElementChange } from "../../../lib/nft/elements.ts";
import type { NftTable } from "../../../lib/nft/ruleset.ts";
import { type Admission, createAdmission, FOLLOW_MAX_MS } from "../../../lib/node/admission.ts";
import { desiredTable } from "../../../lib/node/desired_table.ts";
import type { BindingsView, PodBindings } from "../../../lib/node/pod_bindings.ts";
import { createScheduler } from "../../../lib/node/scheduler.ts";
import type { ClusterState } from "../../../lib/node/sync.ts";
import type { AdmitRequest } from "../../../lib/plugin/admission_protocol.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { policyObjects } from "../../../lib/policy/nft_rules.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../harness/assert.ts";
import { namespace, pod, policy, stateOf } from "../policy/fixtures.ts";
import { fakeLog } from "./fake_log.ts";

const DENY = policy("x/deny", { podSelector: {}, policyTypes: ["Ingress"] });

function admitOf(name: string, ip: string, containerId = `c-${name}`): AdmitRequest {
  return {
    version: 1,
    kind: "admit",
    containerId,
    ifname: "eth0",
    pod: { namespace: "x", name },
    ips: [ip],
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A scheduler that records what the admission told it, and a state the test edits. */
function fakeScheduler(state: PolicyState | undefined) {
  const calls: { generation: number; run: boolean }[] = [];
  let current: BindingsView | undefined;
  return {
    calls,
    state,
    current: () => current,
    bindings(next: BindingsView, run = true) {
      current = next;
      calls.push({ generation: next.generation, run });
    },
    live(): ClusterState["policy"] {
      return this.state;
    },
  };
}

/** The table the kernel holds and the batches written to it. */
function fakeKernel(table: NftTable | undefined) {
  const batches: ElementChange[][] = [];
  const conntrack: string[][] = [];
  return {
    batches,
    conntrack,
    table,
    patch(edit: (t: NftTable) => ElementChange[] | undefined) {
      if (!this.table) return Promise.resolve({ applied: false, changes: 0 });
      const changes = edit(this.table);
      if (!changes) return Promise.resolve({ applied: false, changes: 0 });
      batches.push(changes);
      return Promise.resolve({ applied: true, changes: changes.length });
    },
    deleteConntrack(ips: readonly string[]) {
      conntrack.push([...ips]);
      return 1;
    },
  };
}

function world(pods: PodInfo[] = [pod("x/web", { node: "n1" })]): PolicyState {
  return stateOf({ pods, namespaces: [namespace("x")], policies: [DENY] });
}

function tableFor(state: PolicyState): NftTable {
  return desiredTable({
    clusterCidrs: ["10.244.0.0/16"],
    podCIDRs: ["10.244.1.0/24"],
    policy: policyObjects(compilePolicies(state, { node: "n1" })),
  });
}

function setup(opts: {
  state?: PolicyState;
  table?: NftTable | null;
  fastPath?: boolean;
  ipam?: () => PodBindings;
  waits?: { pod?: number; admit?: number; release?: number };
} = {}) {
  const state = opts.state ?? world();
  const schedule = fakeScheduler(state);
  const kernel = fakeKernel(opts.table === null ? undefined : opts.table ?? tableFor(state));
  const log = fakeLog();
  const admission = createAdmission({
    nodeName: "n1",
    log,
    readBindings: opts.ipam ?? (() => new Map()),
    kernel,
    waits: { pod: 100, admit: 300, release: 200, ...opts.waits },
    fastPath: opts.fastPath,
  });
  admission.attach(schedule);
  return { schedule, kernel, log, admission };
}

/** Settles `p` and says how: "pending" if it has not within `ms`. */
async function outcome(p: Promise<unknown>, ms = 20): Promise<string> {
  return await Promise.race([
    p.then(() => "ok", (e) => `error: ${(e as Error).message}`),
    sleep(ms).then(() => "pending"),
  ]);
}

Deno.test("admit() of a known pod closes it in one batch and answers; the reconcile follows", async () => {
  const { schedule, kernel, admission } = setup();
  await admission.handler.admit(admitOf("web", "10.244.1.5"));
  assertEquals(kernel.batches.length, 1);
  assertEquals(kernel.batches[0].map((c) => `${c.op} ${c.set} ${c.element}`), [
    "add self4 10.244.1.5 . 10.244.1.5",
    "add ingress4 10.244.1.5 : jump ing_isolated",
  ]);
  const { generation } = admission.view();
  assertEquals(schedule.calls.filter((c) => c.run), [], "a reconcile was asked before the answer");
  // A table computed from an older snapshot would put back what the batch took away.
  assert(admission.tables.stale(generation - 1));
  assert(!admission.tables.stale(generation));
  await sleep(FOLLOW_MAX_MS + 10);
  assertEquals(schedule.calls.filter((c) => c.run), [{ generation, run: true }]);
  assertEquals(schedule.current()?.bindings.get("c-web@eth0")?.ips, ["10.244.1.5"]);
});

Deno.test("admit() without the fast path answers once a table holding its binding is applied", async () => {
  const pods = ["x/web", "x/web2", "x/web3"].map((k) => pod(k, { node: "n1" }));
  const { schedule, admission, kernel } = setup({ state: world(pods), fastPath: false });
  const admitted = admission.handler.admit(admitOf("web", "10.244.1.5"));
  await sleep(1);
  const { generation } = admission.view();
  assertEquals(schedule.calls.at(-1), { generation, run: true });
  admission.tables.applied(generation - 1); // a run whose snapshot predates the binding
  assertEquals(await outcome(admitted), "pending");
  admission.tables.applied(generation);
  assertEquals(await outcome(admitted), "ok");
  assertEquals(kernel.batches, []);
  // A refused table is a refusal; no table in time too (the plugin fails ADD with 11).
  const refused = admission.handler.admit(admitOf("web2", "10.244.1.6"));
  await sleep(1);
  admission.tables.failed(admission.view().generation, "nft: Could not process rule");
  assertMatch((await assertRejects(() => refused)).message, /not applied: nft: Could not process/);
  const late = await assertRejects(() => admission.handler.admit(admitOf("web3", "10.244.1.7")));
  assertMatch(late.message, /did not take the pod within 300 ms/);
});

Deno.test("admit() takes the full path when no table is known yet or the batch cannot close it", async () => {
  const { admission } = setup({ table: null });
  const admitted = admission.handler.admit(admitOf("web", "10.244.1.5"));
  assertEquals(await outcome(admitted), "pending");
  admission.tables.applied(admission.view().generation);
  assertEquals(await outcome(admitted), "ok");
});

Deno.test("admit() waits for an unknown Pod object, bounded, then admits it isolated (logged once)", async () => {
  const state = world([]);
  const { schedule, kernel, log, admission } = setup({ state, waits: { pod: 150 } });
  const started = performance.now();
  const admitted = admission.handler.admit(admitOf("web", "10.244.1.5"));
  // Meanwhile a reconcile closes it as isolated until known.
  assertEquals(schedule.calls.at(-1)?.run, true);
  await sleep(30);
  schedule.state = world([pod("x/web", { node: "n1", labels: { app: "web" } })]);
  admission.podsChanged();
  await admitted;
  assert(performance.now() - started < 120, "the Pod's arrival did not end the wait");
  assertEquals(kernel.batches[0].map((c) => c.element), [
    "10.244.1.5 . 10.244.1.5",
    "10.244.1.5 : jump ing_isolated",
  ]);
  assertEquals(log.lines("pod admitted isolated until its Pod object is known"), []);
  // Never seen: after the wait, isolated in both directions; said once per attachment.
  for (let i = 0; i < 2; i++) {
    await admission.handler.admit(admitOf("ghost", "10.244.1.6"));
  }
  assertEquals(kernel.batches.at(-1)!.map((c) => c.element), [
    "10.244.1.6 . 10.244.1.6",
    "10.244.1.6 : jump ing_isolated",
    "10.244.1.6 : jump egr_isolated",
  ]);
  const logged = log.lines("pod admitted isolated until its Pod object is known");
  assertEquals(logged.length, 1);
  assertEquals(logged[0].pod, "x/ghost");
  // No pod in CNI_ARGS: no wait at all.
  const t = performance.now();
  const { pod: _, ...anonymous } = admitOf("anon", "10.244.1.7");
  await admission.handler.admit(anonymous);
  assert(performance.now() - t < 100, "waited for a pod CNI_ARGS did not name");
});

Deno.test("release() unbinds, answers once applied, and removes the addresses' conntrack entries", async () => {
  const { schedule, kernel, admission } = setup();
  await admission.handler.admit(admitOf("web", "10.244.1.5"));
  const released = admission.handler.release({
    version: 1,
    kind: "release",
    containerId: "c-web",
    ifname: "eth0",
  });
  await sleep(1);
  const { generation, bindings } = admission.view();
  assertEquals(bindings.size, 0);
  assertEquals(schedule.calls.at(-1), { generation, run: true });
  assertEquals(await outcome(released), "pending");
  assertEquals(kernel.conntrack, [], "conntrack went before the table had the release");
  admission.tables.applied(generation);
  assertEquals(await outcome(released), "ok");
  assertEquals(kernel.conntrack, [["10.244.1.5"]]);
  // Again (containerd DELs twice): nothing bound, nothing to wait for.
  await admission.handler.release({
    version: 1,
    kind: "release",
    containerId: "c-web",
    ifname: "eth0",
  });
  assertEquals(kernel.conntrack.length, 1);
  // A DEL of a pod the agent had no binding for (ADDed before an agent that lost it): the
  // addresses IPAM held still lose their conntrack entries.
  await admission.handler.release({
    version: 1,
    kind: "release",
    containerId: "c-lost",
    ifname: "eth0",
    ips: ["10.244.1.9"],
  });
  assertEquals(kernel.conntrack, [["10.244.1.5"], ["10.244.1.9"]]);
});

Deno.test("resync() reads the IPAM store again: missed DELs and ADDs, but not what was released", async () => {
  const binding = (c: string, ip: string) => ({
    containerId: c,
    ifname: "eth0",
    pod: { namespace: "x", name: c },
    ips: [ip],
  });
  let ipam: PodBindings = new Map([["c1@eth0", binding("c1", "10.244.1.5")]]);
  const { schedule, admission, log } = setup({ ipam: () => ipam, fastPath: false });
  assertEquals([...admission.view().bindings.keys()], ["c1@eth0"], "not rebuilt on start");
  assertEquals(schedule.calls[0], { generation: 1, run: false });
  // c2 ADDed while the agent was down; c1's DEL missed; c3 released but its record not yet gone.
  const released = admission.handler.release({
    version: 1,
    kind: "release",
    containerId: "c1",
    ifname: "eth0",
  });
  admission.tables.applied(admission.view().generation);
  await released;
  ipam = new Map([
    ["c1@eth0", binding("c1", "10.244.1.5")],
    ["c2@eth0", binding("c2", "10.244.1.6")],
  ]);
  admission.resync();
  assertEquals([...admission.view().bindings.keys()], ["c2@eth0"]);
  assertEquals(log.lines("bindings read again from the IPAM store"), [{
    added: ["c2@eth0"],
    gone: [],
  }]);
  const generation = admission.view().generation;
  admission.resync(); // nothing changed: the same bindings, no new generation
  assertEquals(admission.view().generation, generation);
  ipam = new Map(); // GC freed c2; c1's record is gone too, so its release is forgotten
  admission.resync();
  assertEquals(admission.view().bindings.size, 0);
  ipam = new Map([["c1@eth0", binding("c1", "10.244.1.5")]]); // c1 ADDed again
  admission.resync();
  assertEquals([...admission.view().bindings.keys()], ["c1@eth0"]);
});

Deno.test("a burst of 8 admits coalesces into few reconciles, each answered by a run holding it", async () => {
  const snapshots: number[] = [];
  // A reconcile of 20 ms that applies its snapshot's bindings (the table step's report).
  const sync = {
    async run(state: ClusterState) {
      const generation = state.bindings?.generation ?? 0;
      snapshots.push(generation);
      await sleep(20);
      admission.tables.applied(generation);
      return true;
    },
  };
  const schedule = createScheduler(sync, () => {});
  const state = world(Array.from({ length: 8 }, (_, i) => pod(`x/p${i}`, { node: "n1" })));
  schedule.policy({
    pods: state.pods,
    namespaces: state.namespaces,
    policies: state.policies,
    clusterPolicies: new Map(),
  });
  const admission: Admission = createAdmission({
    nodeName: "n1",
    log: fakeLog(),
    readBindings: () => new Map(),
    kernel: fakeKernel(undefined), // no table yet: every admit waits for a reconcile
  });
  admission.attach(schedule);
  schedule.nodes(new Map([["n1", { name: "n1", ips: [], podCIDRs: ["10.244.1.0/24"] }]]), true);
  await sleep(5); // the first run (no bindings) is under way
  const answered: number[] = [];
  await Promise.all(
    Array.from(
      { length: 8 },
      (_, i) =>
        admission.handler.admit(admitOf(`p${i}`, `10.244.1.${10 + i}`)).then(() =>
          answered.push(snapshots.length)
        ),
    ),
  );
  assertEquals(answered.length, 8);
  assert(snapshots.length <= 3, `8 admits made ${snapshots.length} runs: ${snapshots}`);
  // The run that was under way when they came had none of them: nobody was answered by it.
  assert(answered.every((runs) => runs >= 2), `answered after runs ${answered}`);
  await schedule.idle();
});

Deno.test("admit() of a binding the IPAM store gave and a table already holds answers at once", async () => {
  const ipam: PodBindings = new Map([["c-web@eth0", {
    containerId: "c-web",
    ifname: "eth0",
    pod: { namespace: "x", name: "web" },
    ips: ["10.244.1.5"],
  }]]);
  const { kernel, admission } = setup({ ipam: () => ipam });
  admission.tables.applied(admission.view().generation);
  assertEquals(await admission.handler.admit(admitOf("web", "10.244.1.5")), {
    by: "already bound",
  });
  assertEquals(kernel.batches, []);
  // Not once the binding differs (another address): closed as any new one.
  const other = await admission.handler.admit(admitOf("web", "10.244.1.6"));
  assertEquals((other as { by: string }).by, "element batch");
  assertEquals(kernel.batches.length, 1);
});
