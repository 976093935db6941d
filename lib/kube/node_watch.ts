// List + watch of nodes (lib/kube/informer.ts), kept as a map of what routing and
// ClusterNetworkPolicy `nodes` peers need.
import type { KubeClient } from "./client.ts";
import { type InformerOptions, nameOf, runInformer } from "./informer.ts";
import { type NodeInfo, parseKubeNode } from "./node.ts";

/** Callbacks and tuning (mostly for tests): the informer's, over the node map. */
export type NodeWatchOptions = Pick<
  InformerOptions<NodeInfo>,
  "signal" | "log" | "onChange" | "onProgress" | "onState" | "relistMs" | "backoffMs"
>;

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
    // A relabelled node changes the peers of `nodes` selectors: a change like an address.
    same: (a, b) =>
      a.ips.join(",") === b.ips.join(",") && a.podCIDRs.join(",") === b.podCIDRs.join(",") &&
      sameLabels(a.labels ?? {}, b.labels ?? {}),
  });
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => b[k] === a[k]);
}
