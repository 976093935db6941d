// Keeps the kernel's `inet mycni` table equal to the desired one: the difference from what was
// last applied on every change, the whole table when what the kernel holds is not known (start,
// after a failed transaction) and on a periodic re-check. Either way one `nft -f` transaction,
// so a failure leaves the old table whole and the next run heals it.
import { applyNft, readCounters } from "./cli.ts";
import {
  emptyTable,
  NFT_TABLE,
  type NftTable,
  renderFullTable,
  renderTableChange,
} from "./ruleset.ts";

/** Applies desired tables; remembers the last one applied. */
export interface TableSync {
  /**
   * Makes the kernel hold `table`. `replace` loads it whole (and re-creates anything someone
   * removed). Returns whether a transaction ran.
   */
  apply(table: NftTable, opts: { replace: boolean }): Promise<boolean>;
  /** Whether a table was applied since start (the kernel holds ours). */
  readonly applied: boolean;
  /** The table's named counters (packets), counting across whole-table reloads. */
  counters(): Promise<Map<string, number>>;
}

/**
 * A table sync for this agent.
 *
 * @example
 * const tables = createTableSync();
 * await tables.apply(desiredTable(input), { replace: false });
 */
export function createTableSync(): TableSync {
  let last: NftTable | undefined;
  // A whole-table reload zeroes the kernel's counters: what they held is kept here.
  const carried = new Map<string, number>();
  const read = () => readCounters(NFT_TABLE.family, NFT_TABLE.name);
  return {
    async apply(table, opts) {
      const replace = opts.replace || last === undefined;
      const text = replace
        ? renderFullTable(table)
        : renderTableChange(last ?? emptyTable(table.name), table);
      if (text === "") return false;
      const before = replace ? await read().catch(() => undefined) : undefined;
      try {
        await applyNft(text);
      } catch (err) {
        // The kernel kept its old table, which we may no longer know exactly: reload next time.
        last = undefined;
        throw err;
      }
      last = table;
      for (const [name, n] of before ?? []) carried.set(name, (carried.get(name) ?? 0) + n);
      return true;
    },
    get applied() {
      return last !== undefined;
    },
    async counters() {
      const now = await read();
      const out = new Map(carried);
      for (const [name, n] of now) out.set(name, (out.get(name) ?? 0) + n);
      return out;
    },
  };
}
