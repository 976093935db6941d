// nftables through the `nft` program: one `nft -f -` per change (a transaction: all of it or
// none), named counters read back for /metrics, and the table removed on uninstall.
import { run, runOutput } from "../process/run.ts";

/**
 * Runs `text` as one nft transaction. Throws the CommandError naming nft's complaint (the
 * kernel keeps the ruleset it had: nothing of a failed transaction is applied).
 *
 * @example
 * await applyNft("add table inet mycni\n");
 */
export async function applyNft(text: string): Promise<void> {
  if (text === "") return;
  await run(["nft", "-f", "-"], { stdin: text });
}

/**
 * Packet counts of the table's named counters; an empty map when the table does not exist.
 *
 * @example
 * await readCounters("inet", "mycni"); // Map { "ingress_dropped" => 12, ... }
 */
export async function readCounters(family: string, table: string): Promise<Map<string, number>> {
  const out = await runOutput(["nft", "-j", "list", "counters", "table", family, table]);
  const counts = new Map<string, number>();
  if (out.code !== 0) {
    if (/No such file or directory/.test(out.stderr)) return counts;
    throw new Error(`nft list counters table ${family} ${table} exited ${out.code}: ${out.stderr}`);
  }
  const items = (JSON.parse(out.stdout) as { nftables?: unknown[] }).nftables ?? [];
  for (const item of items) {
    const c = (item as { counter?: { name?: string; packets?: number } }).counter;
    if (c?.name !== undefined) counts.set(c.name, c.packets ?? 0);
  }
  return counts;
}

/** Deletes the table; absent is fine. Returns whether there was one. */
export async function deleteTable(family: string, table: string): Promise<boolean> {
  const out = await runOutput(["nft", "delete", "table", family, table]);
  if (out.code === 0) return true;
  if (/No such file or directory/.test(out.stderr)) return false;
  throw new Error(`nft delete table ${family} ${table} exited ${out.code}: ${out.stderr.trim()}`);
}
