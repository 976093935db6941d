// The upstream ClusterNetworkPolicy conformance suite (network-policy-api v0.2.0, 24 tests, 92
// subtests, plus main's 2 relabelling steps; tests/unit/policy/cnp_conformance_cases.ts) on the
// simulated cluster: the base manifests' namespaces and pods on 3 dual-stack nodes, every agent
// watching the fake API server. Each upstream test starts from no policy (upstream's clean-up);
// its subtests that share a state are one group, written as the difference from the group
// before; the test waits until every agent reports enforcing the write (/healthz
// policy.resourceVersion), then sends each of the group's probes once in IPv4 and once in IPv6
// (allowed ones up to three times, as checkMatrix does) and compares with upstream's
// expectation. A group's expectation must differ from what the state before it gave (the model,
// explain, says what that was), unless the group is marked unchanged: no check passes on the
// old datapath. SCTP probes cannot be sent (no SCTP sockets in this kernel): they are skipped
// and counted; the unit suite checks them through explain and the rendered tables.
import { assert } from "../harness/assert.ts";
import {
  applyDelta,
  type ConformanceGroup,
  conformanceGroups,
  type Family,
  groupName,
  modelAllows,
  modelState,
  sendProbe,
  startConformanceWorld,
} from "../harness/cnp_world.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import { waitEnforced } from "../harness/netpol.ts";
import {
  CONFORMANCE_CASES,
  type PolicySet,
  type Probe,
} from "../unit/policy/cnp_conformance_cases.ts";

const FAMILIES: readonly Family[] = [4, 6];
const EMPTY: PolicySet = { clusterNetworkPolicies: [], networkPolicies: [] };
/** A probe that gets no answer this fast counts as denied. */
const TIMEOUT_MS = 1000;
/** Attempts a probe upstream expects to connect gets (loss on a loaded machine, not rules). */
const ALLOWED_ATTEMPTS = 3;
/**
 * Groups whose expectation the state before them already meets (so their check confirms that
 * nothing changed). None: every upstream test starts from no policy, and every later state
 * changes something its subtests probe.
 */
const UNCHANGED: ReadonlySet<string> = new Set();

interface Outcome {
  readonly probe: Probe;
  readonly family: Family;
  readonly got: boolean;
  readonly attempts: number;
}

Deno.test({
  name:
    "ClusterNetworkPolicy conformance (network-policy-api v0.2.0) on a 3-node dual-stack cluster",
  ignore: !canRunPrivileged,
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const started = performance.now();
  await using world = await startConformanceWorld();
  const setupMs = performance.now() - started;
  const groups = conformanceGroups(CONFORMANCE_CASES);
  // CNP_ONLY=<regex> runs only the matching upstream tests (while working on one).
  const only = Deno.env.get("CNP_ONLY");
  const chosen = groups.filter((g) => !only || new RegExp(only).test(g.test));
  const counts = { sent: 0, skipped: 0, groups: 0, retried: 0 };
  const enforceMs: number[] = [];
  let state: PolicySet = EMPTY;
  let failures = 0;

  for (const g of chosen) {
    await t.step(`${groupName(g)}: ${g.subtests.map((s) => s.name).join(" / ")}`, async () => {
      // Upstream cleans up after each test: the next one starts from no policy.
      if (g.index === 1 && state !== EMPTY) {
        enforceMs.push(await enforce(world, state, EMPTY, `${groupName(g)}: clean-up`));
        state = EMPTY;
      }
      const probes = g.subtests.flatMap((s) => s.probes);
      const runnable = probes.filter((p) => p.protocol !== "SCTP");
      counts.skipped += probes.length - runnable.length;
      checkItDiffers(g, runnable, state, world.addresses);
      try {
        enforceMs.push(await enforce(world, state, g.set, groupName(g)));
      } finally {
        state = g.set; // whatever was written is in force now, or the next delta is wrong
      }
      counts.groups++;
      const outcomes = await Promise.all(
        runnable.flatMap((p) => FAMILIES.map((family) => send(world, p, family))),
      );
      counts.sent += outcomes.length;
      counts.retried += outcomes.filter((o) => o.attempts > 1).length;
      const wrong = outcomes.filter((o) => o.got !== o.probe.allowed);
      if (wrong.length > 0) failures++;
      assert(
        wrong.length === 0,
        `${groupName(g)}: the datapath disagrees with upstream on ${wrong.length} of ` +
          `${outcomes.length} probes:\n` + wrong.map((o) => describe(world, g, o)).join("\n") +
          (await world.cluster.logs(8)),
      );
    });
  }

  const seconds = Math.round((performance.now() - started) / 1000);
  const median = [...enforceMs].sort((a, b) => a - b)[enforceMs.length >> 1] ?? 0;
  const allProbes = chosen.flatMap((g) => g.subtests.flatMap((s) => s.probes));
  console.log(
    `cnp conformance: ${chosen.length} groups (${
      new Set(chosen.map((g) => g.test)).size
    } upstream tests, ${chosen.reduce((n, g) => n + g.subtests.length, 0)} subtests, ` +
      `${allProbes.length} upstream probes); ${counts.sent} probes sent (` +
      `${allProbes.length - counts.skipped} upstream probes × IPv4 and IPv6), ` +
      `${counts.skipped} SCTP probes skipped (no SCTP sockets), ${
        chosen.length - counts.groups
      } groups not reached; ${counts.retried} allowed probes needed another attempt; every ` +
      `agent enforcing a write: median ${median} ms, max ${Math.max(0, ...enforceMs)} ms; ` +
      `${seconds} s (${Math.round(setupMs / 1000)} s of it starting the world)`,
  );
  assert(failures === 0, `${failures} groups disagree with upstream`);
});

/**
 * Writes the difference between two states and waits until every agent enforces it; the ms it
 * took from the last write.
 */
async function enforce(
  world: Awaited<ReturnType<typeof startConformanceWorld>>,
  from: PolicySet,
  to: PolicySet,
  label: string,
): Promise<number> {
  const writes = await applyDelta(world, from, to);
  if (writes === 0) throw new Error(`${label}: the change wrote nothing to the API`);
  return await waitEnforced(world, world.cluster.policyWriteVersion(), { timeoutMs: 20000 });
}

/**
 * Refuses a group whose expected verdicts the state before it already gives (per the model),
 * unless it is marked unchanged, and a marked group that does change something.
 */
function checkItDiffers(
  g: ConformanceGroup,
  runnable: readonly Probe[],
  before: PolicySet,
  addrs: Parameters<typeof modelState>[1],
): void {
  if (runnable.length === 0) return; // SCTP only: nothing the datapath can be asked
  const was = modelState(before, addrs);
  const differs = runnable.some((p) =>
    FAMILIES.some((family) => modelAllows(was, addrs, p, family) !== p.allowed)
  );
  const marked = UNCHANGED.has(groupName(g));
  if (!differs && !marked) {
    throw new Error(
      `${groupName(g)}: the state before it already gives every expected verdict, so its ` +
        `check would pass whether or not the change is enforced (mark it unchanged if meant)`,
    );
  }
  if (differs && marked) throw new Error(`${groupName(g)} is marked unchanged but changes`);
}

async function send(
  world: Awaited<ReturnType<typeof startConformanceWorld>>,
  probe: Probe,
  family: Family,
): Promise<Outcome> {
  // Denied: one attempt (a retry could only hide a rule that came late). Allowed: up to three.
  const tries = probe.allowed ? ALLOWED_ATTEMPTS : 1;
  for (let attempt = 1; attempt <= tries; attempt++) {
    if (await sendProbe(world, probe, family, TIMEOUT_MS)) {
      return { probe, family, got: true, attempts: attempt };
    }
  }
  return { probe, family, got: false, attempts: tries };
}

/** One wrong probe, with what the model says of it (so a failure says whose fault it is). */
function describe(
  world: Awaited<ReturnType<typeof startConformanceWorld>>,
  g: ConformanceGroup,
  o: Outcome,
): string {
  const subtest = g.subtests.find((s) => s.probes.includes(o.probe))!;
  const model = modelAllows(modelState(g.set, world.addresses), world.addresses, o.probe, o.family);
  return `  IPv${o.family} ${o.probe.from} -> ${o.probe.to} ${o.probe.protocol} ${o.probe.port}: ` +
    `upstream ${o.probe.allowed ? "allowed" : "denied"}, datapath ${
      o.got ? "connects" : "fails"
    }, explain ${model ? "allowed" : "denied"} (subtest "${subtest.name}")`;
}
