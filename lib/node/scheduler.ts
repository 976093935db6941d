// When the agent reconciles: requests from the node source, the policy informers and the
// periodic resync are coalesced into one run at a time over the newest state, a failed run is
// retried with backoff, and the resourceVersion the kernel enforces is reported after each good
// run (DESIGN.md "Node agent contract", /healthz policy.resourceVersion).
import type { ClusterPolicyEntry } from "../kube/cluster_network_policy.ts";
import type { NodeInfo } from "../kube/node.ts";
import type { NamespaceInfo, PodInfo, PolicyEntry } from "../kube/policy_objects.ts";
import type { BindingsView } from "./pod_bindings.ts";
import type { ClusterState, RunOptions } from "./sync.ts";

/** Datapath re-check (routes someone deleted come back) even when no node changed, as flannel. */
export const RESYNC_MS = 10_000;
/** A reconcile that failed (a refused netlink change, `nft` or `iptables`) is retried sooner: 0.5 s, doubling. */
export const RETRY_FIRST_MS = 500;

/** The collections NetworkPolicy is computed from, as the informers hold them. */
export interface PolicySources {
  pods?: ReadonlyMap<string, PodInfo>;
  namespaces?: ReadonlyMap<string, NamespaceInfo>;
  policies?: ReadonlyMap<string, PolicyEntry>;
  /** ClusterNetworkPolicies by name (empty, never undefined once listed, where not served). */
  clusterPolicies?: ReadonlyMap<string, ClusterPolicyEntry>;
}

/** What the scheduler runs: one reconcile towards `state`, true when all of it succeeded. */
export interface Reconciler {
  run(state: ClusterState, opts: RunOptions): Promise<boolean>;
}

/** The timer functions the retry uses (the global ones; a test's fake clock). */
export interface Timers {
  /** Returns an id for `clearTimeout`. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

const GLOBAL_TIMERS: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** Where reconcile requests come in. */
export interface Scheduler {
  /** The node list changed (or was listed again, `isFull`). */
  nodes(next: ReadonlyMap<string, NodeInfo>, isFull: boolean): void;
  /** One of the policy collections changed (the informer's live map). */
  policy(next: PolicySources): void;
  /**
   * A policy source saw `resourceVersion` (called after its change, if any, asked for a run):
   * with nothing running or to retry, the kernel already holds what it says; else the run in
   * progress reports it when it ends.
   */
  progress(resourceVersion: string): void;
  /** The periodic re-check. */
  resync(): void;
  /**
   * This node's address -> pod bindings changed (an admission, a release, the IPAM store read
   * again): the next run's snapshot holds `next`, and one is asked for unless `run` is false
   * (the caller asks later, or a resync is coming).
   */
  bindings(next: BindingsView, run?: boolean): void;
  /**
   * The policy state as the informers hold it now (their live maps, not copies; with the
   * bindings not applied), undefined until pods, namespaces and policies were all listed. For
   * the admission's fast path, which must not wait for a run.
   */
  live(): ClusterState["policy"];
  /** Waits for the running reconcile and cancels a pending retry (shutdown). */
  idle(): Promise<void>;
}

/**
 * Coalesces reconcile requests: one runs at a time, and the requests that arrive meanwhile
 * become one more run over the newest state. A failed run is retried with backoff (0.5 s
 * doubling up to the resync period) until one succeeds. Nothing runs before the node list is
 * known; policy is part of the state only once pods, namespaces, NetworkPolicies and
 * ClusterNetworkPolicies were all listed (a cluster without the CRD lists those as none).
 * `onApplied` gets the newest policy resourceVersion the kernel holds the effect of.
 *
 * @example
 * const schedule = createScheduler(sync, (rv) => status.policyResourceVersion = rv);
 * schedule.nodes(nodes, true);
 */
export function createScheduler(
  sync: Reconciler,
  onApplied: (resourceVersion: string) => void,
  timers: Timers = GLOBAL_TIMERS,
): Scheduler {
  let nodes: ReadonlyMap<string, NodeInfo> | undefined;
  // How far the policy sources were seen, and how far the kernel holds their effect.
  let seenRv = "";
  let appliedOk = false;
  const policy: PolicySources = {};
  let full = false;
  let nodesChanged = true;
  let again = false;
  let running: Promise<void> | undefined;
  const retry = createBackoff(timers, () => request(true));
  const listed = () =>
    policy.pods !== undefined && policy.namespaces !== undefined &&
    policy.policies !== undefined && policy.clusterPolicies !== undefined;
  // The informers keep changing their maps: each run works on copies, so what it applied and
  // what `explain` answers from stay one consistent state.
  // The node list is copied only when it changed: an unchanged list keeps its identity, which
  // lets a reconcile for a pod or policy event skip everything derived from the nodes.
  let nodesCopy: ReadonlyMap<string, NodeInfo> | undefined;
  // The bindings are immutable maps (lib/node/pod_bindings.ts): no copy needed.
  let bindings: BindingsView | undefined;
  const snapshot = (): ClusterState => ({
    nodes: nodesCopy ??= new Map(nodes!),
    policy: listed()
      ? {
        pods: new Map(policy.pods!),
        namespaces: new Map(policy.namespaces!),
        policies: new Map(policy.policies!),
        clusterPolicies: new Map(policy.clusterPolicies!),
      }
      : undefined,
    ...(bindings ? { bindings } : {}),
  });
  const loop = async () => {
    let ok: boolean;
    do {
      again = false;
      const state = snapshot();
      const opts = { full, nodesChanged };
      full = false;
      nodesChanged = false;
      ok = await sync.run(state, opts);
      retry.after(ok);
    } while (again);
    running = undefined;
    // Events seen since the last snapshot changed nothing (a change would have asked for
    // another run): the kernel holds everything seen so far.
    appliedOk = ok && listed();
    if (appliedOk) onApplied(seenRv);
  };
  function request(isFull: boolean) {
    full ||= isFull;
    if (!nodes) return; // nothing listed yet: never reconcile from an empty guess
    if (running) again = true;
    else running = loop();
  }
  return {
    nodes(next, isFull) {
      nodes = next;
      nodesCopy = undefined;
      nodesChanged = true;
      request(isFull);
    },
    policy(next) {
      Object.assign(policy, next);
      request(false);
    },
    progress(resourceVersion) {
      if (newerVersion(resourceVersion, seenRv)) seenRv = resourceVersion;
      if (!running && appliedOk && !retry.pending) onApplied(seenRv);
    },
    resync() {
      request(true);
    },
    bindings(next, run = true) {
      bindings = next;
      if (run) request(false);
    },
    live() {
      if (!listed()) return undefined;
      return { pods: policy.pods!, namespaces: policy.namespaces!, policies: policy.policies! };
    },
    async idle() {
      await (running ?? Promise.resolve());
      retry.cancel();
    },
  };
}

/** The retry of failed runs: 0.5 s after the first failure, doubling up to the resync period. */
function createBackoff(timers: Timers, retry: () => void) {
  let ms = 0;
  let timer: unknown;
  const cancel = () => {
    timers.clearTimeout(timer);
    timer = undefined;
  };
  return {
    /** After a run: a success resets the backoff, a failure schedules the next try. */
    after(ok: boolean) {
      cancel();
      if (ok) {
        ms = 0;
        return;
      }
      ms = ms === 0 ? RETRY_FIRST_MS : Math.min(ms * 2, RESYNC_MS);
      timer = timers.setTimeout(() => {
        timer = undefined;
        retry();
      }, ms);
    },
    cancel,
    /** A retry is scheduled (the kernel may not hold what was seen). */
    get pending() {
      return timer !== undefined;
    },
  };
}

/**
 * Whether resourceVersion `a` is newer than `b`: as numbers (etcd revisions), else as text.
 *
 * @example
 * newerVersion("10", "9"); // true
 */
export function newerVersion(a: string, b: string): boolean {
  if (/^[0-9]+$/.test(a) && /^[0-9]+$/.test(b)) return BigInt(a) > BigInt(b);
  return a > b;
}
