// List + watch of nodes, kept as a map: list, watch from the list's resourceVersion, re-list on
// 410 Gone and on a timer, reconnect with backoff when the stream breaks. The caller is told
// about every change that matters to routing and about whether the watch is healthy.
import type { NodeInfo } from "./node.ts";
import type { Logger } from "../log/logger.ts";
import type { KubeClient } from "./client.ts";
import { nameOf, parseKubeNode, resourceVersionOf } from "./node.ts";
import { GoneError } from "./watch.ts";
import { sleep } from "../time/sleep.ts";

/** Tuning, mostly for tests. */
export interface NodeWatchOptions {
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Called after the map changed (or after every list, with `full`). */
  readonly onChange: (nodes: ReadonlyMap<string, NodeInfo>, full: boolean) => void;
  /** Called when the watch goes up or down; `error` says why it is down. */
  readonly onState: (state: { watching: boolean; error?: string }) => void;
  /** Full re-list every this many ms (default 5 min, as flannel). */
  readonly relistMs?: number;
  /** First backoff after an error (doubles to 30 s). */
  readonly backoffMs?: number;
}

const MAX_BACKOFF_MS = 30_000;

/** Runs until `signal` aborts. Never throws: errors are reported and retried. */
export async function watchNodes(client: KubeClient, opts: NodeWatchOptions): Promise<void> {
  const nodes = new Map<string, NodeInfo>();
  const skipped = new Map<string, string>();
  const relistMs = opts.relistMs ?? 300_000;
  const firstBackoff = opts.backoffMs ?? 500;
  let backoff = firstBackoff;
  const fail = async (err: unknown, what: string) => {
    if (opts.signal.aborted) return;
    const error = `${what}: ${(err as Error).message}`;
    opts.log.error("node watch failed", { error, retryInMs: backoff });
    opts.onState({ watching: false, error });
    await sleep(backoff, opts.signal);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  };
  // Returns whether the map changed.
  const apply = (obj: unknown, deleted: boolean): boolean => {
    const name = nameOf(obj);
    if (deleted) {
      skipped.delete(name);
      return nodes.delete(name);
    }
    const parsed = parseKubeNode(obj);
    if (!parsed.ok) {
      if (skipped.get(parsed.name) !== parsed.reason) {
        opts.log.warn("node skipped", { node: parsed.name, reason: parsed.reason });
        skipped.set(parsed.name, parsed.reason);
      }
      return nodes.delete(parsed.name);
    }
    skipped.delete(parsed.node.name);
    const old = nodes.get(parsed.node.name);
    if (old && sameNode(old, parsed.node)) return false;
    nodes.set(parsed.node.name, parsed.node);
    return true;
  };

  while (!opts.signal.aborted) {
    let rv: string;
    try {
      const list = await client.listNodes(opts.signal);
      nodes.clear();
      for (const item of list.items) apply(item, false);
      const names = new Set(list.items.map(nameOf));
      for (const name of skipped.keys()) if (!names.has(name)) skipped.delete(name);
      rv = list.resourceVersion;
      opts.onChange(nodes, true);
    } catch (err) {
      await fail(err, "list nodes");
      continue;
    }
    const relistAt = Date.now() + relistMs;
    while (!opts.signal.aborted && Date.now() < relistAt) {
      const stop = AbortSignal.any([opts.signal, AbortSignal.timeout(relistAt - Date.now())]);
      const openedAt = Date.now();
      let events = 0;
      try {
        const onOpen = () => opts.onState({ watching: true });
        for await (const ev of client.watchNodes(rv, { signal: stop, onOpen })) {
          events++;
          backoff = firstBackoff;
          if (ev.type === "ERROR") continue; // thrown by the client; here for the type checker
          rv = resourceVersionOf(ev.object) || rv;
          if (ev.type === "BOOKMARK") continue;
          if (apply(ev.object, ev.type === "DELETED")) opts.onChange(nodes, false);
        }
        // The server closed the stream (its timeout): watch again from where we are, unless it
        // keeps closing at once, which is an error like any other.
        if (events === 0 && Date.now() - openedAt < 1000) {
          await fail(new Error("stream closed at once"), "watch nodes");
        }
      } catch (err) {
        if (opts.signal.aborted) return;
        if (stop.aborted) break; // time for the periodic re-list
        if (err instanceof GoneError) {
          opts.log.info("node watch expired, listing again", { resourceVersion: rv });
          break;
        }
        await fail(err, "watch nodes");
      }
    }
  }
}

function sameNode(a: NodeInfo, b: NodeInfo): boolean {
  return a.ips.join(",") === b.ips.join(",") && a.podCIDRs.join(",") === b.podCIDRs.join(",");
}
