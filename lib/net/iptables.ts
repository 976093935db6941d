// Our own iptables chains, per family, through iptables-save / iptables-restore: one restore per
// change, nothing when the kernel already has exactly what we want.
import type { Family } from "../ip/cidr.ts";
import { run } from "../process/run.ts";

/** One chain we own, the built-in chain that jumps to it, and its rules in iptables-save form. */
export interface OwnedChain {
  readonly table: "nat" | "filter";
  readonly chain: string;
  readonly hook: "POSTROUTING" | "FORWARD";
  /** The jump rule, exactly as iptables-save prints it. */
  readonly jump: string;
  readonly rules: readonly string[];
}

/** Seconds iptables-restore waits for the xtables lock (shared with kube-proxy). */
const XTABLES_WAIT = "5";

const SAVE: Record<Family, string> = { 4: "iptables-save", 6: "ip6tables-save" };
const RESTORE: Record<Family, string> = { 4: "iptables-restore", 6: "ip6tables-restore" };

/** What iptables-save shows of one chain of ours. */
export interface ChainState {
  readonly exists: boolean;
  readonly jumps: number;
  readonly rules: readonly string[];
}

type Skeleton = Omit<OwnedChain, "rules">;

/**
 * Reads our chains out of `iptables-save` text (pure: exported for tests).
 *
 * @example
 * parseChainState(saveText, { table: "nat", chain: "MYCNI-POSTRTG", hook: "POSTROUTING", jump });
 */
export function parseChainState(save: string, chain: Skeleton): ChainState {
  let table = "";
  let exists = false, jumps = 0;
  const rules: string[] = [];
  for (const line of save.split("\n")) {
    if (line.startsWith("*")) table = line.slice(1).trim();
    if (table !== chain.table) continue;
    if (line.startsWith(`:${chain.chain} `)) exists = true;
    else if (line === chain.jump) jumps++;
    else if (line.startsWith(`-A ${chain.chain} `)) rules.push(line);
  }
  return { exists, jumps, rules };
}

/**
 * Makes the kernel hold exactly `chains` for `family` (one jump each, the rules in order).
 * Returns the chains it changed; an empty list means nothing was run but iptables-save.
 */
export async function ensureChains(
  family: Family,
  chains: readonly OwnedChain[],
): Promise<string[]> {
  const save = await run([SAVE[family]]);
  const tables = new Map<string, string[]>();
  const changed: string[] = [];
  for (const chain of chains) {
    const state = parseChainState(save, chain);
    const same = state.exists && state.jumps === 1 && state.rules.length === chain.rules.length &&
      state.rules.every((r, i) => r === chain.rules[i]);
    if (same) continue;
    changed.push(`${chain.table}/${chain.chain}`);
    // In --noflush mode a chain line flushes that chain (creating it if needed), so the rules
    // that follow replace the old ones in one transaction.
    const lines = [`:${chain.chain} - [0:0]`, ...chain.rules];
    if (state.jumps === 0) lines.push(chain.jump);
    for (let i = 1; i < state.jumps; i++) lines.push(chain.jump.replace(/^-A /, "-D "));
    tables.set(chain.table, [...(tables.get(chain.table) ?? []), ...lines]);
  }
  if (tables.size > 0) await restore(family, tables);
  return changed;
}

/** Removes our jumps and chains for `family`; absent ones are fine. Returns what it removed. */
export async function deleteChains(family: Family, chains: readonly Skeleton[]): Promise<string[]> {
  const save = await run([SAVE[family]]);
  const tables = new Map<string, string[]>();
  const removed: string[] = [];
  for (const chain of chains) {
    const state = parseChainState(save, chain);
    if (!state.exists && state.jumps === 0) continue;
    removed.push(`${chain.table}/${chain.chain}`);
    const lines: string[] = [];
    for (let i = 0; i < state.jumps; i++) lines.push(chain.jump.replace(/^-A /, "-D "));
    if (state.exists) lines.push(`:${chain.chain} - [0:0]`, `-X ${chain.chain}`);
    tables.set(chain.table, [...(tables.get(chain.table) ?? []), ...lines]);
  }
  if (tables.size > 0) await restore(family, tables);
  return removed;
}

async function restore(family: Family, tables: Map<string, string[]>): Promise<void> {
  let text = "";
  for (const [table, lines] of tables) text += `*${table}\n${lines.join("\n")}\nCOMMIT\n`;
  await run([RESTORE[family], "--noflush", "-w", XTABLES_WAIT], { stdin: text });
}
