// The agent's view of a cluster node and the static nodes-file format (`--nodes-file`).

/** A node as the agent needs it: its name, its addresses and the pod networks it owns. */
export interface NodeInfo {
  readonly name: string;
  /** Node addresses (InternalIP), at most one per family is used, the first one wins. */
  readonly ips: readonly string[];
  /** podCIDRs, as written in `spec.podCIDRs` or the nodes file. */
  readonly podCIDRs: readonly string[];
}

/**
 * Parses the nodes file: `[{"name","ip","podCIDRs":[...]}]`, with an optional `"ips":[...]` for
 * dual-stack node addresses. Throws naming the entry and field that is wrong.
 *
 * @example
 * parseNodesFile('[{"name":"n1","ip":"192.0.2.11","podCIDRs":["10.244.1.0/24"]}]');
 */
export function parseNodesFile(text: string): NodeInfo[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`Nodes file is not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(data)) throw new Error("Nodes file must be a JSON array of nodes");
  return data.map((entry, i) => parseNodesFileEntry(entry, i));
}

/** Parses one nodes-file entry (also accepted by the fake API server's control API). */
export function parseNodesFileEntry(entry: unknown, index = 0): NodeInfo {
  const where = `Nodes file entry ${index}`;
  if (typeof entry !== "object" || entry === null) throw new Error(`${where} is not an object`);
  const e = entry as Record<string, unknown>;
  if (typeof e.name !== "string" || e.name === "") {
    throw new Error(`${where}: "name" must be a string`);
  }
  const ips: string[] = [];
  if (e.ip !== undefined) {
    if (typeof e.ip !== "string") throw new Error(`${where} (${e.name}): "ip" must be a string`);
    ips.push(e.ip);
  }
  if (e.ips !== undefined) {
    if (!isStringArray(e.ips)) {
      throw new Error(`${where} (${e.name}): "ips" must be a list of strings`);
    }
    for (const ip of e.ips) if (!ips.includes(ip)) ips.push(ip);
  }
  const podCIDRs = e.podCIDRs ?? [];
  if (!isStringArray(podCIDRs)) {
    throw new Error(`${where} (${e.name}): "podCIDRs" must be a list of strings`);
  }
  return { name: e.name, ips, podCIDRs };
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}
