// The agent's nftables table as tests compare it: `nft -j list table`, handles and counter values
// dropped, set elements sorted (a hash set lists them in an order its history decides), the
// elements of dynamic sets (the kernel's) dropped.
import { inNetns, runOutput } from "../../lib/process/run.ts";

/**
 * The table in the namespace at `netns` as sorted lines, one per object; "" when it is absent.
 *
 * @example
 * assertEquals(await listTable(node.netns, "inet mycni"), before);
 */
export async function listTable(netns: string, table: string): Promise<string> {
  const out = await runOutput(inNetns(netns, ["nft", "-j", "list", "table", ...table.split(" ")]));
  if (out.code !== 0) return "";
  const items = (JSON.parse(out.stdout).nftables as Record<string, Record<string, unknown>>[])
    .filter((i) => !("metainfo" in i))
    .map((i) => {
      const [kind, body] = Object.entries(i)[0];
      const { handle: _h, packets: _p, bytes: _b, ...rest } = body;
      // A set with a timeout is dynamic: its elements are the kernel's (the flow log's seen
      // flows) or strict mode's cuts, not the table's, and come and go with traffic.
      const dynamic = Array.isArray(rest.flags) && rest.flags.includes("timeout");
      if (dynamic) delete rest.elem;
      if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e) => JSON.stringify(e)).sort();
      return JSON.stringify([kind, rest]);
    });
  return items.sort().join("\n");
}
