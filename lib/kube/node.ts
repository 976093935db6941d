// v1.Node JSON -> the agent's NodeInfo: podCIDRs from spec, the address from status, the labels
// (ClusterNetworkPolicy `nodes` peers select on them).

/** A node as the agent needs it: its name, its addresses and the pod networks it owns. */
export interface NodeInfo {
  readonly name: string;
  /** Node addresses (InternalIP), at most one per family is used, the first one wins. */
  readonly ips: readonly string[];
  /** podCIDRs, as written in `spec.podCIDRs` or the nodes file. */
  readonly podCIDRs: readonly string[];
  /** `metadata.labels` (a nodes file may give them); absent: none. */
  readonly labels?: Readonly<Record<string, string>>;
}

/** A node we can route to, or why we cannot. */
export type ParsedNode =
  | { readonly ok: true; readonly node: NodeInfo }
  | { readonly ok: false; readonly name: string; readonly reason: string };

/**
 * Reads `metadata.name`, `spec.podCIDRs` (falling back to the older single `spec.podCIDR`), the
 * `InternalIP` entries of `status.addresses` and `metadata.labels` (string values only). A node without a podCIDR (the controller has
 * not allocated one yet) or without an InternalIP is not an error: it comes back as not ok.
 *
 * @example
 * parseKubeNode({ metadata: { name: "n2" }, spec: { podCIDRs: ["10.244.2.0/24"] },
 *   status: { addresses: [{ type: "InternalIP", address: "192.0.2.12" }] } });
 * // { ok: true,
 * //   node: { name: "n2", ips: ["192.0.2.12"], podCIDRs: ["10.244.2.0/24"], labels: {} } }
 */
export function parseKubeNode(obj: unknown): ParsedNode {
  const o = asRecord(obj);
  const metadata = asRecord(o.metadata);
  const name = metadata.name;
  if (typeof name !== "string" || name === "") {
    return { ok: false, name: "?", reason: "node object has no metadata.name" };
  }
  const spec = asRecord(o.spec);
  let podCIDRs = Array.isArray(spec.podCIDRs)
    ? spec.podCIDRs.filter((c): c is string => typeof c === "string" && c !== "")
    : [];
  if (podCIDRs.length === 0 && typeof spec.podCIDR === "string" && spec.podCIDR !== "") {
    podCIDRs = [spec.podCIDR];
  }
  const addresses = Array.isArray(asRecord(o.status).addresses)
    ? (asRecord(o.status).addresses as unknown[])
    : [];
  const ips = addresses
    .map(asRecord)
    .filter((a) => a.type === "InternalIP" && typeof a.address === "string" && a.address !== "")
    .map((a) => a.address as string);
  if (podCIDRs.length === 0) return { ok: false, name, reason: "no podCIDR allocated yet" };
  if (ips.length === 0) return { ok: false, name, reason: "no InternalIP in status.addresses" };
  const labels = Object.fromEntries(
    Object.entries(asRecord(metadata.labels)).filter(([, v]) => typeof v === "string"),
  ) as Record<string, string>;
  return { ok: true, node: { name, ips, podCIDRs, labels } };
}

function asRecord(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? v as Record<string, unknown>
    : {};
}
