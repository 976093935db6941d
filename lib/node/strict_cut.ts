// Strict mode (`--policy-strict`, DESIGN.md "contract — strictness"): after each policy table
// the kernel takes, the established connections the new state denies are cut. The addresses
// the change may have narrowed (lib/policy/strict.ts affectedAddresses, from the plan applied
// before and this one) filter a conntrack dump of this node; each entry is judged by its
// original direction with explain over the new state, so replies of allowed connections stay;
// the denied ones are deleted, so their next packet meets the rules. The forward rules of
// lib/policy/strict_rules.ts keep them cut (a cut UDP connection's answers are put in a set
// first, before its entry goes).
//
// The cut runs right after the apply, off the reconcile's path: one at a time, and changes that
// arrive meanwhile become one more cut over the newest state with every address they named.
import type { Logger } from "../log/logger.ts";
import { type ConntrackEntry, deleteConntrackList, listConntrack } from "../net/conntrack.ts";
import { applyNft } from "../nft/cli.ts";
import { NFT_TABLE } from "../nft/ruleset.ts";
import type { PolicyState } from "../policy/compile.ts";
import { explainFlow } from "../policy/explain.ts";
import type { PolicyPlan } from "../policy/plan.ts";
import { affectedAddresses, connectionsToCut, type JudgedFlow } from "../policy/strict.ts";
import { cutElement } from "../policy/strict_rules.ts";
import type { AppliedPolicy } from "./table_step.ts";

/** What the cut does to the kernel (the real one unless a test gives a fake). */
export interface StrictKernel {
  /** The conntrack entries touching any of `addresses` (this node's netns). */
  list(addresses: readonly string[]): ConntrackEntry[];
  /** Deletes `entries`; returns how many were still there. */
  remove(entries: readonly ConntrackEntry[]): number;
  /** Adds cut UDP connections' answer directions to the cut sets (one transaction). */
  hold(elements: readonly { set: string; element: string }[]): Promise<void>;
}

/** The kernel of the agent's own netns. */
export const STRICT_KERNEL: StrictKernel = {
  list: (addresses) => listConntrack({ addresses }),
  remove: (entries) => deleteConntrackList(entries),
  hold: (elements) =>
    applyNft(
      elements.map((e) =>
        `add element ${NFT_TABLE.family} ${NFT_TABLE.name} ${e.set} { ${e.element} }`
      ).join("\n") + "\n",
    ),
};

/** What strict mode did so far (/metrics). */
export interface StrictCounters {
  /** Connections cut. */
  cut: number;
  /** Cuts that failed (listed or deleted nothing; retried). */
  failures: number;
}

/** Strict mode's runner: fed each applied policy, cuts in the background. */
export interface StrictCutter {
  /** A policy table the kernel took: cut what it denies (soon, not before this returns). */
  applied(a: AppliedPolicy): void;
  /** Resolves when no cut is running or due (tests, shutdown). */
  idle(): Promise<void>;
  readonly counters: StrictCounters;
}

/** A failed cut is tried again this much later. */
const RETRY_MS = 1000;

const PROTOCOL: Record<number, "TCP" | "UDP" | "SCTP"> = { 6: "TCP", 17: "UDP", 132: "SCTP" };

/**
 * A strict-mode runner logging to `log`.
 *
 * @example
 * const strict = createStrictCutter(log);
 * createTableStep(opts, log, { onPolicyApplied: (a) => strict.applied(a) });
 */
export function createStrictCutter(
  log: Logger,
  kernel: StrictKernel = STRICT_KERNEL,
): StrictCutter {
  const counters: StrictCounters = { cut: 0, failures: 0 };
  let previous: PolicyPlan | undefined;
  let state: PolicyState | undefined;
  const pending = new Set<string>();
  let running: Promise<void> | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;

  async function cutOnce(): Promise<void> {
    const addresses = [...pending].sort();
    pending.clear();
    const started = performance.now();
    try {
      const entries = kernel.list(addresses);
      const listed = performance.now();
      const cut = connectionsToCut(entries, judge(state!), { addresses });
      const judged = performance.now();
      const held = cut.flatMap((e) => cutElement(e) ?? []);
      // The answers first: between the delete and the set, a server's datagram would be a new
      // flow nothing refuses.
      if (held.length > 0) await hold(held);
      const holding = performance.now();
      const n = kernel.remove(cut);
      counters.cut += n;
      if (n > 0 || cut.length > 0) {
        const ms = (a: number, b: number) => Math.round(b - a);
        log.info("connections cut", {
          count: n,
          judged: entries.length,
          addresses: addresses.length,
          held: held.length,
          ms: ms(started, performance.now()),
          // Where it went: the dump, explain, the UDP hold (an nft process), the deletes.
          stepsMs: {
            list: ms(started, listed),
            judge: ms(listed, judged),
            hold: ms(judged, holding),
            delete: ms(holding, performance.now()),
          },
        });
      }
    } catch (err) {
      counters.failures++;
      for (const a of addresses) pending.add(a);
      log.error("cannot cut the connections a policy change denies: retrying", {
        addresses: addresses.length,
        error: (err as Error).message,
      });
      retry ??= setTimeout(() => {
        retry = undefined;
        start();
      }, RETRY_MS);
    }
  }

  async function hold(elements: { set: string; element: string }[]): Promise<void> {
    try {
      await kernel.hold(elements);
    } catch (err) {
      // Still cut: the client's next datagram meets the rules; only a server that answers
      // before it may revive the flow.
      log.warn("cut UDP connections not held (their answers may revive them)", {
        count: elements.length,
        error: (err as Error).message,
      });
    }
  }

  function start(): void {
    if (running || pending.size === 0 || retry) return;
    running = (async () => {
      while (pending.size > 0 && !retry) await cutOnce();
      running = undefined;
    })();
  }

  return {
    counters,
    applied(a) {
      for (const ip of affectedAddresses(previous, a.plan)) pending.add(ip);
      previous = a.plan;
      state = a.state;
      start();
    },
    async idle() {
      while (running) await running;
    },
  };
}

/**
 * The verdict on a connection's flow: explain over `state`, once per distinct flow (the caller
 * memoises). What explain cannot judge (ICMP, a flow without a port, ends it refuses) is kept:
 * the cut only takes what the rules deny.
 */
function judge(state: PolicyState): (f: JudgedFlow) => boolean {
  return (f) => {
    const protocol = PROTOCOL[f.proto];
    if (protocol === undefined || f.dport === undefined) return true;
    try {
      return explainFlow(state, { from: f.src, to: f.dst, protocol, port: f.dport }).allowed;
    } catch {
      return true;
    }
  };
}
