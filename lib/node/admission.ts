// The agent's admission (DESIGN.md "Pod lifecycle"): what it does for each request the plugin
// sends (lib/node/admission_server.ts serves the socket). It keeps this node's address -> pod
// bindings (from ADD, rebuilt from the IPAM store on start and re-read on every resync), hands
// them to the scheduler for every reconcile, and answers an admit only once the kernel holds a
// state for the pod's addresses that is no more open than its policy: the fast path's element
// batch (lib/node/fast_admission.ts), else a reconcile whose snapshot included the binding.
//
// Choices where the issue is silent, as Cilium does for endpoint creation (fail closed, bounded
// wait): an admit waits at most POD_WAIT_MS for a Pod object the pod informer has not seen (the
// kubelet creates it before the sandbox, so it is usually there); after that the pod is admitted
// isolated in both directions until the object arrives. A table that does not land within
// ADMIT_WAIT_MS (under the plugin's 5 s), or a refused one, is an error answer: the plugin fails
// ADD with 11 and the runtime retries. A release waits at most RELEASE_WAIT_MS (DEL waits 1 s
// and never fails on it), then removes the conntrack entries of the addresses it unbound.
import type { LogFields, Logger } from "../log/logger.ts";
import type { ElementChange } from "../nft/elements.ts";
import type { NftTable } from "../nft/ruleset.ts";
import type { TablePatched } from "../nft/sync.ts";
import type { AdmitRequest, ReleaseRequest } from "../plugin/admission_protocol.ts";
import type { AdmissionHandler } from "./admission_server.ts";
import { closingChanges, fastIsolation } from "./fast_admission.ts";
import {
  attachmentKey,
  bindingOf,
  type BindingsView,
  bindPod,
  isPodKnown,
  type PodBinding,
  type PodBindings,
  releasePod,
} from "./pod_bindings.ts";
import type { Scheduler } from "./scheduler.ts";
import type { TableBindings } from "./table_step.ts";

/** How long an admit waits for the Pod object of a pod the informer has not seen. */
export const POD_WAIT_MS = 2000;
/** How long an admit waits for the kernel (the plugin gives up at 5 s). */
export const ADMIT_WAIT_MS = 4000;
/** How long a release waits for the kernel (DEL gives up at 1 s). */
export const RELEASE_WAIT_MS = 900;
/**
 * After a fast admission the full reconcile starts once no other admission came for this long,
 * and at most FOLLOW_MAX_MS after the first: a compile holds the agent's only thread for tens of
 * milliseconds at scale (~65 ms at 10,000 pods), and an admission that arrives meanwhile waits
 * for it, so the admissions of a burst (plugins started together reach the agent within a few
 * tens of ms) are answered first. The pod is closed all the while; only what it will be allowed
 * waits, at most this long plus the reconcile.
 */
export const FOLLOW_QUIET_MS = 15;
export const FOLLOW_MAX_MS = 100;

/** What the admission writes to the kernel itself. */
export interface AdmissionKernel {
  /** lib/nft/sync.ts TableSync.patch: elements of the table last applied, one batch. */
  patch(edit: (table: NftTable) => ElementChange[] | undefined): Promise<TablePatched>;
  /** Removes the conntrack entries of these addresses; how many (lib/net/conntrack.ts). */
  deleteConntrack(ips: readonly string[]): number;
}

/** What the admission works from. */
export interface AdmissionOptions {
  readonly nodeName: string;
  readonly log: Logger;
  /** This node's bindings as the IPAM store has them (lib/node/ipam_bindings.ts). */
  readonly readBindings: () => PodBindings;
  readonly kernel: AdmissionKernel;
  /** Shorter waits (tests). */
  readonly waits?: { readonly pod?: number; readonly admit?: number; readonly release?: number };
  /** Without the fast path, every admit waits for a reconcile (default on). */
  readonly fastPath?: boolean;
}

/** The scheduler as the admission uses it. */
export type AdmissionScheduler = Pick<Scheduler, "bindings" | "live">;

/** The agent's admission. */
export interface Admission {
  /** What serveAdmission calls. */
  readonly handler: AdmissionHandler;
  /** What the table step reports to (lib/node/table_step.ts). */
  readonly tables: TableBindings;
  /** Gives the scheduler the bindings (and every change of them); before serving. */
  attach(schedule: AdmissionScheduler): void;
  /** The pod informer changed: admits waiting for their Pod object look again. */
  podsChanged(): void;
  /** Reads the IPAM store again (the periodic resync): missed DELs and ADDs, GC'd addresses. */
  resync(): void;
  /** The bindings now. */
  view(): BindingsView;
}

/**
 * The admission for node `opts.nodeName`; its bindings are read from the IPAM store now.
 *
 * @example
 * const admission = createAdmission({ nodeName, log, readBindings, kernel });
 * admission.attach(schedule);
 * await serveAdmission({ path, handler: admission.handler, podCIDRs, signal });
 */
export function createAdmission(opts: AdmissionOptions): Admission {
  const { log, nodeName } = opts;
  const waits = { pod: POD_WAIT_MS, admit: ADMIT_WAIT_MS, release: RELEASE_WAIT_MS, ...opts.waits };
  const tracker = createTracker();
  const podWait = createWaiters();
  let schedule: AdmissionScheduler | undefined;
  let view: BindingsView = { bindings: readInitial(opts), generation: 1 };
  // Attachments released and not yet gone from the IPAM store (DEL frees them just after).
  const released = new Set<string>();
  const isolatedLogged = new Set<string>();
  // The generation each attachment's binding was last set in.
  const boundAt = new Map<string, number>([...view.bindings.keys()].map((k) => [k, 1]));
  let ipamError: string | undefined;

  const scheduler = () => {
    if (!schedule) throw new Error("The admission is not attached to the scheduler yet");
    return schedule;
  };
  /** New bindings (or only a new generation): in the scheduler's next snapshot, no run asked. */
  const set = (bindings: PodBindings) => {
    view = { bindings, generation: view.generation + 1 };
    schedule?.bindings(view, false);
    return view.generation;
  };
  const known = (b: PodBinding) => {
    const live = schedule?.live();
    return live !== undefined && isPodKnown(b, live.pods, nodeName);
  };
  const follow = createFollower(() => scheduler().bindings(view, true));
  const fastPath: FastPath = {
    enabled: opts.fastPath !== false,
    patch: (edit) => opts.kernel.patch(edit),
    live: () => scheduler().live(),
    nodeName,
    log,
    tracker,
  };

  async function admit(req: AdmitRequest): Promise<LogFields> {
    const binding = bindingOf(req);
    const key = attachmentKey(binding.containerId, binding.ifname);
    released.delete(key);
    // Bound so already (the IPAM store read again since the plugin wrote it, or a retried ADD)
    // and in a table the kernel took since: nothing to do.
    const had = view.bindings.get(key);
    if (had && sameBinding(had, binding) && tracker.appliedGeneration() >= boundAt.get(key)!) {
      return { by: "already bound" };
    }
    let generation = set(bindPod(view.bindings, binding));
    boundAt.set(key, generation);
    const steps: Record<string, number> = {};
    if (!known(binding)) {
      const waiting = performance.now();
      // Meanwhile the reconcile closes it: a binding without a known pod is isolated both ways.
      scheduler().bindings(view, true);
      const seen = binding.pod !== undefined &&
        await podWait.wait(() => known(binding), waits.pod);
      if (!seen && !isolatedLogged.has(key)) {
        isolatedLogged.add(key);
        logIsolated(log, binding, waits.pod);
      }
      // What the kernel is asked to hold from here on is computed after this moment.
      generation = set(view.bindings);
      steps.pod = round(performance.now() - waiting);
    }
    const fast = await closeFast(fastPath, binding, generation, steps);
    if (fast === "closed") {
      follow();
      return { by: "element batch", stepsMs: steps };
    }
    if (fast === "applied") return { by: "reconcile", stepsMs: steps };
    const waiting = performance.now();
    scheduler().bindings(view, true);
    await tracker.wait(generation, waits.admit);
    steps.reconcile = round(performance.now() - waiting);
    return { by: "reconcile", fastPath: fast, stepsMs: steps };
  }

  async function release(req: ReleaseRequest): Promise<void> {
    const key = attachmentKey(req.containerId, req.ifname);
    released.add(key);
    isolatedLogged.delete(key);
    const held = view.bindings.get(key);
    // DEL names what IPAM held: their entries go even when nothing was bound here.
    const ips = [...new Set([...held?.ips ?? [], ...req.ips ?? []])];
    try {
      if (held === undefined) return; // not bound (a repeated DEL, or one never admitted)
      const generation = set(releasePod(view.bindings, req.containerId, req.ifname));
      scheduler().bindings(view, true);
      await tracker.wait(generation, waits.release);
    } finally {
      if (ips.length > 0) removeConntrack(opts, ips);
    }
  }

  return {
    handler: { admit, release },
    tables: tracker,
    attach(s) {
      schedule = s;
      s.bindings(view, false);
    },
    podsChanged: () => podWait.changed(),
    resync() {
      const fromIpam = readIpamAgain(opts, ipamError);
      ipamError = fromIpam.error;
      if (!fromIpam.bindings) return;
      const next = mergeIpam(view.bindings, fromIpam.bindings, released);
      if (next === view.bindings) return;
      const before = view.bindings;
      const gone = [...before.keys()].filter((k) => !next.has(k));
      log.info("bindings read again from the IPAM store", {
        added: [...next.keys()].filter((k) => !before.has(k)),
        gone,
      });
      const generation = set(next);
      for (const k of gone) boundAt.delete(k);
      for (const [k, b] of next) if (before.get(k) !== b) boundAt.set(k, generation);
    },
    view: () => view,
  };
}

/** Milliseconds to a tenth. */
function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** What the fast path works with. */
interface FastPath {
  readonly enabled: boolean;
  readonly patch: AdmissionKernel["patch"];
  readonly live: AdmissionScheduler["live"];
  readonly nodeName: string;
  readonly log: Logger;
  readonly tracker: ReturnType<typeof createTracker>;
}

/**
 * The fast path: "closed" once the kernel holds the closing batch, "applied" when a reconcile
 * holding the binding already landed, else why it could not (then the admission waits for one).
 * Where the time went goes into `steps`: waiting for the table (a reconcile writing it), the batch
 * worked out, the batch written (and the table in memory patched).
 */
async function closeFast(
  fast: FastPath,
  binding: PodBinding,
  generation: number,
  steps: Record<string, number>,
): Promise<string> {
  const { tracker } = fast;
  if (!fast.enabled) return "off";
  if (tracker.appliedGeneration() >= generation) return "applied"; // a reconcile has it
  let declined = "";
  const asked = performance.now();
  let locked = asked, computed = asked;
  try {
    const done = await fast.patch((table) => {
      locked = performance.now();
      if (tracker.appliedGeneration() >= generation) return []; // one has it now
      const live = fast.live();
      const isolation = live && fastIsolation(live, binding, fast.nodeName);
      const changes = isolation && closingChanges(table, binding.ips, isolation);
      if (!changes) {
        declined = !live
          ? "policy not listed yet"
          : !isolation
          ? "ClusterNetworkPolicies"
          : "an interval set covers the address";
      }
      computed = performance.now();
      return changes;
    });
    steps.lock = round(locked - asked);
    steps.close = round(computed - locked);
    steps.write = round(performance.now() - computed);
    if (!done.applied) return declined || done.reason || "not applied";
    tracker.closed(generation);
    return "closed";
  } catch (err) {
    fast.log.warn("fast admission refused by the kernel: waiting for the reconcile", {
      containerId: binding.containerId,
      error: (err as Error).message,
    });
    return "refused by the kernel";
  }
}

/** The one line an attachment admitted isolated until its Pod object is known gets. */
function logIsolated(log: Logger, binding: PodBinding, waitedMs: number): void {
  log.warn("pod admitted isolated until its Pod object is known", {
    containerId: binding.containerId,
    pod: binding.pod ? `${binding.pod.namespace}/${binding.pod.name}` : undefined,
    reason: binding.pod ? `not seen within ${waitedMs} ms` : "CNI_ARGS name no pod",
    ips: binding.ips,
  });
}

/** Best effort: a flow to the address must not reach its next owner through an old entry. */
function removeConntrack(opts: AdmissionOptions, ips: readonly string[]): void {
  try {
    const n = opts.kernel.deleteConntrack(ips);
    if (n > 0) opts.log.info("conntrack entries removed", { ips, count: n });
  } catch (err) {
    opts.log.warn("cannot remove conntrack entries", { ips, error: (err as Error).message });
  }
}

/** The IPAM store's bindings, or the error reading them (logged when it is a new one). */
function readIpamAgain(
  opts: AdmissionOptions,
  lastError: string | undefined,
): { bindings?: PodBindings; error?: string } {
  try {
    return { bindings: opts.readBindings() };
  } catch (err) {
    const error = (err as Error).message;
    if (error !== lastError) opts.log.error("cannot read the IPAM store's bindings", { error });
    return { error };
  }
}

/**
 * The bindings the IPAM store says (every allocation is an attachment that was ADDed and not
 * DELed), without attachments released since (their DEL frees the store's records just after),
 * keeping `current`'s objects where they are the same; `current` itself when nothing changed.
 * Forgets releases the store no longer has.
 */
function mergeIpam(
  current: PodBindings,
  fromIpam: PodBindings,
  released: Set<string>,
): PodBindings {
  for (const key of released) if (!fromIpam.has(key)) released.delete(key);
  const next = new Map<string, PodBinding>();
  let changed = false;
  for (const [key, b] of fromIpam) {
    if (released.has(key)) continue;
    const had = current.get(key);
    const same = had !== undefined && sameBinding(had, b);
    next.set(key, same ? had : b);
    changed ||= !same;
  }
  if (!changed && next.size === current.size) return current;
  return next;
}

function sameBinding(a: PodBinding, b: PodBinding): boolean {
  return a.ips.join() === b.ips.join() && a.pod?.namespace === b.pod?.namespace &&
    a.pod?.name === b.pod?.name;
}

function readInitial(opts: AdmissionOptions): PodBindings {
  try {
    const bindings = opts.readBindings();
    opts.log.info("bindings rebuilt from the IPAM store", { attachments: bindings.size });
    return bindings;
  } catch (err) {
    opts.log.error("cannot read the IPAM store's bindings", { error: (err as Error).message });
    return new Map();
  }
}

/**
 * Which bindings generation the kernel holds: the table step says what it applied (or failed
 * to), the fast path what it closed; waiters are answered from that.
 */
function createTracker() {
  let applied = 0;
  let closed = 0;
  const waiters = new Set<{ generation: number; done: (error?: Error) => void }>();
  const settle = (upTo: number, error?: Error) => {
    for (const w of waiters) if (w.generation <= upTo) w.done(error);
  };
  return {
    /** A table computed before the fast path closed generation `closed` would reopen it. */
    stale: (generation: number) => closed > generation,
    applied(generation: number) {
      applied = Math.max(applied, generation);
      settle(generation);
    },
    failed(generation: number, error: string) {
      settle(generation, new Error(`The node's nftables table was not applied: ${error}`));
    },
    closed(generation: number) {
      closed = Math.max(closed, generation);
    },
    appliedGeneration: () => applied,
    /** Resolves once a table holding `generation` is applied; rejects on failure or timeout. */
    wait(generation: number, ms: number): Promise<void> {
      if (applied >= generation) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const w = {
          generation,
          done: (error?: Error) => {
            waiters.delete(w);
            clearTimeout(timer);
            if (error) reject(error);
            else resolve();
          },
        };
        const timer = setTimeout(
          () =>
            w.done(
              new Error(
                `The node's nftables table did not take the pod within ${ms} ms ` +
                  "(policy not synced yet?)",
              ),
            ),
          ms,
        );
        waiters.add(w);
      });
    },
  };
}

/** Waits for a condition that only a change can make true, each wait bounded. */
function createWaiters() {
  const waiting = new Set<() => void>();
  return {
    /** Resolves true when `check()` holds (now or after a change), false after `ms`. */
    wait(check: () => boolean, ms: number): Promise<boolean> {
      if (check()) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (ok: boolean) => {
          waiting.delete(look);
          clearTimeout(timer);
          resolve(ok);
        };
        const look = () => check() && done(true);
        const timer = setTimeout(() => done(false), ms);
        waiting.add(look);
      });
    },
    changed() {
      for (const look of [...waiting]) look();
    },
  };
}

/** Calls `run` once no call came for FOLLOW_QUIET_MS, at most FOLLOW_MAX_MS after the first. */
function createFollower(run: () => void) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let first = 0;
  return () => {
    const now = performance.now();
    if (timer === undefined) first = now;
    clearTimeout(timer);
    const ms = Math.max(0, Math.min(FOLLOW_QUIET_MS, first + FOLLOW_MAX_MS - now));
    timer = setTimeout(() => {
      timer = undefined;
      run();
    }, ms);
  };
}
