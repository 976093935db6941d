// The agent's bindings after a restart: read from the built-in IPAM's store, where every
// allocation names its container, interface and pod (DESIGN.md "Pod lifecycle": the agent
// rebuilds them before it serves admissions, so a restart loses nothing).
import { DiskStore } from "../ipam/store.ts";
import { bindingsFromAllocations, type PodBindings } from "./pod_bindings.ts";

/**
 * This node's bindings from `<dataDir>/<network>/` (the conflist's `dataDir` and `name`). A
 * network with no state yet has none; the directory is not created. Takes the store's lock for
 * the read, as the plugin does, so no ADD or DEL is half-way through it.
 *
 * @example
 * const bindings = readIpamBindings("/var/lib/cni/networks", "mycni");
 */
export function readIpamBindings(dataDir: string, network: string): PodBindings {
  try {
    if (!Deno.statSync(`${dataDir}/${network}`).isDirectory) return new Map();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return new Map();
    throw err;
  }
  using store = DiskStore.open(dataDir, network);
  return bindingsFromAllocations(store.list());
}
