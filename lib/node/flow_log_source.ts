// The flow log's wiring in the agent (`--flow-log denied`, DESIGN.md "contract — flow log"): the
// nfnetlink_log subscriber bound in the agent's netns, feeding a FlowLog (lib/node/flow_log.ts)
// whose records are named from the policy state the kernel holds: an address is the pod that
// held it in the applied state (on any node), a prefix's digest the decider of the applied plan
// (lib/policy/flow_log_rules.ts planDeciders). A record logged under a table the agent has
// since replaced names a decider the new plan may not hold: it is kept without pods and
// policies, never dropped.
//
// The table is the kernel's and outlives the agent: while the agent is away (a restart)
// enforcement goes on and the kernel's log messages for the group are dropped unread (counted
// as nothing: there is no subscriber); the new agent binds the group again and the log resumes.
import type { Logger } from "../log/logger.ts";
import { type NflogStats, NflogSubscriber } from "../net/nflog.ts";
import type { PolicyState } from "../policy/compile.ts";
import {
  FLOW_LOG_DROPPED_COUNTER,
  FLOW_LOG_GROUP,
  type FlowDecider,
  flowLogIndex,
  planDeciders,
} from "../policy/flow_log_rules.ts";
import { type FlowAttribution, FlowLog, renderFlowLogMetrics } from "./flow_log.ts";
import type { AppliedPolicy } from "./table_step.ts";

/** The running flow log of the agent. */
export interface FlowLogSource extends AsyncDisposable {
  readonly log: FlowLog;
  /** A policy table the kernel took: name records from it from now on. */
  applied(a: AppliedPolicy): void;
  /** The /metrics lines, with the kernel's over-the-rate counter (packets). */
  metrics(kernelDropped: ReadonlyMap<string, number>): string;
  /** The subscriber's counts (undefined while it is not bound). */
  readonly stats: NflogStats | undefined;
}

/** How the flow log is started. */
export interface FlowLogSourceOptions {
  /** `--flow-log-rate`. */
  readonly rate: number;
  /** The netns to bind the group in (the agent's own when omitted: tests give one). */
  readonly netns?: string;
  readonly group?: number;
  /** Ends the reader (and every `flows --follow`). */
  readonly signal: AbortSignal;
}

/**
 * Binds the flow log's group and reads it until `opts.signal` aborts. A group the kernel will
 * not bind (another process holds it) is logged, and the log stays empty: enforcement does not
 * depend on it.
 *
 * @example
 * await using flows = startFlowLog({ rate: 100, signal }, log);
 * healthHandler(status, { flowLog: flows.log });
 */
export function startFlowLog(opts: FlowLogSourceOptions, log: Logger): FlowLogSource {
  let attribution = attributionOf(undefined);
  const flowLog = new FlowLog({
    rate: opts.rate,
    log,
    attribution: () => attribution,
    signal: opts.signal,
  });
  const group = opts.group ?? FLOW_LOG_GROUP;
  // Stopped by the agent's signal, or by disposing (an agent that gives up early).
  const stop = new AbortController();
  opts.signal.addEventListener("abort", () => stop.abort(), { once: true });
  let sub: NflogSubscriber | undefined;
  let reading: Promise<void> = Promise.resolve();
  try {
    sub = NflogSubscriber.open(group, { netns: opts.netns });
    reading = sub.run((p) => flowLog.add(p), stop.signal).catch((err) => {
      log.error("flow log reader stopped", { group, error: (err as Error).message });
    });
  } catch (err) {
    log.error("cannot bind the flow log's nflog group: no flows are recorded", {
      group,
      error: (err as Error).message,
    });
  }
  return {
    log: flowLog,
    applied(a) {
      attribution = attributionOf(a);
    },
    metrics(kernel) {
      return renderFlowLogMetrics(flowLog.counters, {
        kernelDropped: kernel.get(FLOW_LOG_DROPPED_COUNTER) ?? 0,
        lost: sub?.stats.lost ?? 0,
      });
    },
    get stats() {
      return sub?.stats;
    },
    async [Symbol.asyncDispose]() {
      stop.abort();
      await reading;
      sub?.close();
      flowLog.close();
    },
  };
}

/**
 * How records are named from the policy table the kernel holds (nothing before the first):
 * an address is the pod holding it in `a.state` (on any node), a digest the decider of
 * `a.plan`. Pure; the address index is built on the first record that asks.
 *
 * @example
 * attributionOf(applied).decider(parseFlowLogPrefix(p.prefix)!.id)?.policies; // ["x/deny"]
 */
export function attributionOf(a: AppliedPolicy | undefined): FlowAttribution {
  const deciders: Map<string, FlowDecider> = a ? flowLogIndex(planDeciders(a.plan)) : new Map();
  const pods = podIndex(a?.state);
  return { podOf: (ip) => pods().get(ip), decider: (id) => deciders.get(id) };
}

/**
 * Address -> pod (`ns/name`) of `state`, built on first use: the pod that is no host-network
 * pod and holds the address, the first by key where two do (as explain and the verdict maps
 * decide a shared address).
 */
function podIndex(state: PolicyState | undefined): () => ReadonlyMap<string, string> {
  let index: Map<string, string> | undefined;
  return () => {
    if (index) return index;
    index = new Map();
    const keys = [...state?.pods.keys() ?? []].sort();
    for (const key of keys) {
      const pod = state!.pods.get(key)!;
      if (pod.hostNetwork) continue;
      for (const ip of pod.ips) if (!index.has(ip)) index.set(ip, key);
    }
    return index;
  };
}
