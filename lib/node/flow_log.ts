// The flow log (DESIGN.md "contract — flow log"): logged packets from nfnetlink_log become
// records naming the pods and policies, at most `rate` a second per node, the last 1000 kept
// for `mycni-init flows`, each written as a JSON line to the agent's log, counted for /metrics,
// and served on the health port (loopback only). The records are plain data built by a pure
// function from a packet and a lookup into the agent's state.
import type { Logger } from "../log/logger.ts";
import type { NflogPacket } from "../net/nflog.ts";
import type { Direction } from "../kube/policy_objects.ts";
import { type FlowDecider, parseFlowLogPrefix } from "../policy/flow_log_rules.ts";

/** One denied connection attempt, as DESIGN.md lists the fields. */
export interface FlowRecord {
  /** RFC 3339 UTC, milliseconds. */
  readonly time: string;
  readonly verdict: "deny";
  /** Absent only when the prefix is not one of ours. */
  readonly direction?: Direction;
  readonly src: string;
  readonly dst: string;
  /** "TCP", "UDP", "SCTP", "ICMP", "ICMPv6", else the protocol number. */
  readonly proto: string;
  readonly dport?: number;
  /** `ns/name`; absent for an address that is no pod, or a record that is unattributed. */
  readonly srcPod?: string;
  readonly dstPod?: string;
  /** The deciding policies; absent when the agent's state no longer holds the decision. */
  readonly policies?: readonly string[];
}

/** What attribution reads of the agent's state (the newest it has). */
export interface FlowAttribution {
  /** The pod (`ns/name`) holding an address, on any node. */
  podOf(ip: string): string | undefined;
  /** The decider of a prefix digest (lib/policy/flow_log_rules.ts flowLogIndex). */
  decider(id: string): FlowDecider | undefined;
}

const PROTO_NAMES: Record<number, string> = {
  1: "ICMP",
  6: "TCP",
  17: "UDP",
  58: "ICMPv6",
  132: "SCTP",
};

/**
 * The record of a logged packet. A prefix that is not ours, or whose decider the state no
 * longer knows (the policy changed since the kernel logged it), gives a record without pods
 * and policies: the addresses may have changed hands with the state, so naming pods from the
 * newer state could name the wrong ones. Never undefined: nothing logged is dropped here.
 *
 * @example
 * flowRecord(packet, { podOf: (ip) => pods.get(ip), decider: (id) => index.get(id) });
 */
export function flowRecord(p: NflogPacket, at: FlowAttribution): FlowRecord {
  const parsed = parseFlowLogPrefix(p.prefix);
  const decider = parsed && at.decider(parsed.id);
  const known = decider !== undefined && decider.direction === parsed?.direction;
  const srcPod = known ? at.podOf(p.src) : undefined;
  const dstPod = known ? at.podOf(p.dst) : undefined;
  return {
    time: new Date(p.time).toISOString(),
    verdict: "deny",
    ...(parsed ? { direction: parsed.direction } : {}),
    src: p.src,
    dst: p.dst,
    proto: PROTO_NAMES[p.proto] ?? String(p.proto),
    ...(p.dport !== undefined ? { dport: p.dport } : {}),
    ...(srcPod ? { srcPod } : {}),
    ...(dstPod ? { dstPod } : {}),
    ...(known ? { policies: [...decider.policies] } : {}),
  };
}

/** The flow log's counters for /metrics. */
export interface FlowLogCounters {
  /** Records made. */
  records: number;
  /** Logged packets over the agent's rate, not recorded. */
  dropped: number;
}

/** How a flow log is made. */
export interface FlowLogOptions {
  /** Records per second per node (`--flow-log-rate`); a burst of up to `rate` at once. */
  readonly rate: number;
  /** Records kept for `flows`. */
  readonly capacity?: number;
  /** Where records go as JSON lines (the agent's log); none when omitted. */
  readonly log?: Logger;
  /** The state records are attributed from, asked per packet (it changes under us). */
  readonly attribution: () => FlowAttribution;
  /** Milliseconds clock, for the rate (tests step it). */
  readonly now?: () => number;
  /** Ends every follower when aborted (the health server can then finish). */
  readonly signal?: AbortSignal;
}

/** The records `flows` shows, kept in a ring. */
export const FLOW_LOG_CAPACITY = 1000;

/** A follower's queue limit: one slower than this many records is ended, not fed forever. */
const FOLLOW_QUEUE = 1000;

/**
 * The node's flow log: {@linkcode add} a logged packet, read {@linkcode recent} or
 * {@linkcode follow} new records. Memory is the ring and each follower's bounded queue,
 * whatever arrives.
 */
export class FlowLog {
  readonly counters: FlowLogCounters = { records: 0, dropped: 0 };
  readonly #ring: (FlowRecord | undefined)[];
  #next = 0;
  #tokens: number;
  #last: number;
  readonly #followers = new Set<(r: FlowRecord | null) => void>();

  constructor(readonly opts: FlowLogOptions) {
    if (!(opts.rate >= 1)) throw new RangeError(`flow log rate ${opts.rate} < 1`);
    this.#ring = new Array(opts.capacity ?? FLOW_LOG_CAPACITY);
    this.#tokens = opts.rate;
    this.#last = this.#now();
    opts.signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  /**
   * Records `p` when the rate allows (else counts it dropped); returns the record or undefined.
   *
   * @example
   * sub.run((p) => flowLog.add(p), signal);
   */
  add(p: NflogPacket): FlowRecord | undefined {
    if (!this.#take()) {
      this.counters.dropped++;
      return undefined;
    }
    const r = flowRecord(p, this.opts.attribution());
    this.#ring[this.#next % this.#ring.length] = r;
    this.#next++;
    this.counters.records++;
    this.opts.log?.info("flow", { ...r });
    for (const f of this.#followers) f(r);
    return r;
  }

  /** The kept records, oldest first; only those after `since` (unix ms) when given. */
  recent(since?: number): FlowRecord[] {
    const n = this.#ring.length;
    const out: FlowRecord[] = [];
    for (let i = Math.max(0, this.#next - n); i < this.#next; i++) {
      const r = this.#ring[i % n]!;
      if (since === undefined || Date.parse(r.time) > since) out.push(r);
    }
    return out;
  }

  /** Calls `fn` with each new record, and with null when the log closes; returns the stop. */
  follow(fn: (r: FlowRecord | null) => void): () => void {
    this.#followers.add(fn);
    return () => this.#followers.delete(fn);
  }

  /** How many records are kept. */
  get capacity(): number {
    return this.#ring.length;
  }

  /** Followers currently attached (for tests and /metrics). */
  get followers(): number {
    return this.#followers.size;
  }

  /** Ends every follower. */
  close(): void {
    for (const f of [...this.#followers]) f(null);
    this.#followers.clear();
  }

  /** A token bucket of `rate` tokens refilled at `rate` a second. */
  #take(): boolean {
    const now = this.#now();
    const rate = this.opts.rate;
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#last) / 1000) * rate);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }

  #now(): number {
    return (this.opts.now ?? Date.now)();
  }
}

/** Losses outside the agent's own rate, for {@linkcode renderFlowLogMetrics}. */
export interface FlowLogLosses {
  /** The kernel's over-the-rate counter (FLOW_LOG_DROPPED_COUNTER), packets. */
  readonly kernelDropped?: number;
  /** Messages the subscriber never got (NflogStats.lost). */
  readonly lost?: number;
}

/**
 * The flow log's lines of /metrics: records made, and records not made (over the rate, in the
 * kernel or the agent, or lost on the way).
 *
 * @example
 * renderFlowLogMetrics(flowLog.counters, { kernelDropped: 3, lost: sub.stats.lost });
 */
export function renderFlowLogMetrics(c: FlowLogCounters, losses: FlowLogLosses = {}): string {
  const dropped = c.dropped + (losses.kernelDropped ?? 0) + (losses.lost ?? 0);
  return "# HELP mycni_flow_log_records_total Denied flows recorded\n" +
    "# TYPE mycni_flow_log_records_total counter\n" +
    `mycni_flow_log_records_total ${c.records}\n` +
    "# HELP mycni_flow_log_dropped_total Denied flows not recorded (over the rate, or lost)\n" +
    "# TYPE mycni_flow_log_dropped_total counter\n" +
    `mycni_flow_log_dropped_total ${dropped}\n`;
}

/**
 * The health port's `/flows`: the kept records as JSON lines; `?since=` (unix ms or RFC 3339)
 * only newer ones; `?follow=1` keeps the response open and adds each new record as it comes.
 * Loopback clients only, like /explain. 404 when the flow log is off (`log` undefined).
 *
 * @example
 * if (url.pathname === "/flows") return flowsResponse(req, info, flowLog);
 */
export function flowsResponse(
  req: Request,
  info: Deno.ServeHandlerInfo | undefined,
  log: FlowLog | undefined,
): Response {
  const remote = (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname ?? "";
  if (info && !isLoopback(remote)) return json({ error: "flows answers loopback only" }, 403);
  if (!log) return json({ error: "the flow log is off (--flow-log none)" }, 404);
  const q = new URL(req.url).searchParams;
  const sinceText = q.get("since");
  const since = sinceText === null
    ? undefined
    : /^\d+$/.test(sinceText)
    ? Number(sinceText)
    : Date.parse(sinceText);
  if (since !== undefined && Number.isNaN(since)) {
    return json({ error: `since wants unix ms or an RFC 3339 time, got "${sinceText}"` }, 400);
  }
  const headers = { "content-type": "application/x-ndjson" };
  const lines = log.recent(since).map((r) => JSON.stringify(r) + "\n");
  if (!/^(1|true|yes)$/.test(q.get("follow") ?? "")) {
    return new Response(lines.join(""), { status: 200, headers });
  }
  const enc = new TextEncoder();
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const l of lines) controller.enqueue(enc.encode(l));
      stop = log.follow((r) => {
        try {
          if (r === null) return controller.close();
          // A follower that stopped reading is ended, not queued for without bound.
          if ((controller.desiredSize ?? 0) <= 0) {
            stop();
            controller.enqueue(enc.encode(JSON.stringify({ error: "follower too slow" }) + "\n"));
            return controller.close();
          }
          controller.enqueue(enc.encode(JSON.stringify(r) + "\n"));
        } catch {
          stop(); // the client went away between two records
        }
      });
    },
    cancel() {
      stop();
    },
  }, new CountQueuingStrategy({ highWaterMark: log.capacity + FOLLOW_QUEUE }));
  return new Response(body, { status: 200, headers });
}

function isLoopback(host: string): boolean {
  return host === "::1" || host.startsWith("127.") || host.startsWith("::ffff:127.");
}

function json(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}
