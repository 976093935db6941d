// List + watch of nodes (lib/kube/informer.ts), kept as a map of what routing needs.
import type { Logger } from "../log/logger.ts";
import type { KubeClient } from "./client.ts";
import { nameOf, runInformer } from "./informer.ts";
import { type NodeInfo, parseKubeNode } from "./node.ts";

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

/** Runs until `signal` aborts. Never throws: errors are reported and retried. */
export async function watchNodes(client: KubeClient, opts: NodeWatchOptions): Promise<void> {
  await runInformer<NodeInfo>(client, {
    ...opts,
    path: "/api/v1/nodes",
    what: "nodes",
    parse: (obj) => {
      const p = parseKubeNode(obj);
      return p.ok
        ? { ok: true, key: p.node.name, value: p.node }
        : { ok: false, key: p.name, reason: p.reason };
    },
    keyOf: nameOf,
    same: (a, b) =>
      a.ips.join(",") === b.ips.join(",") && a.podCIDRs.join(",") === b.podCIDRs.join(","),
  });
}
