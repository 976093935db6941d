// Our own iptables chains, per family, through iptables-save / iptables-restore: one restore per
// change, nothing when the kernel already has exactly what we want. Two owners: the agent's
// chains (the forward accept, and the legacy masquerade chain it removes), and the plugin's
// per-attachment masquerade for `ipMasq: true` (the reference bridge's option; the agent
// normally masquerades node-wide in nftables), whose chain name derives from (network,
// container ID), so DEL removes it even when the netns and prevResult are gone (the reference
// leaks it: plugins#810).
import { type Family, MULTICAST } from "../ip/cidr.ts";
import { run } from "../process/run.ts";
import { nameDigest } from "../sys/digest.ts";

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

/** One iptables-restore --noflush of `lines` per table: one transaction per table. */
async function restore(
  family: Family,
  tables: Iterable<readonly [string, readonly string[]]>,
): Promise<void> {
  let text = "";
  for (const [table, lines] of tables) text += `*${table}\n${lines.join("\n")}\nCOMMIT\n`;
  await run([RESTORE[family], "--noflush", "-w", XTABLES_WAIT], { stdin: text });
}

/** The addresses of one attachment and the networks they sit in. */
export interface MasqTarget {
  readonly network: string;
  readonly containerId: string;
  /** [{ ip: "10.244.1.5", cidr: "10.244.1.0/24", family: 4 }] */
  readonly addrs: readonly { ip: string; cidr: string; family: Family }[];
}

/** iptables chain name: "MYCNI-" + 20 hex characters (the limit is 28). */
export function masqChainName(network: string, containerId: string): string {
  return "MYCNI-" + nameDigest(`${network}/${containerId}`).slice(0, 20);
}

/** Adds the attachment's chain and its POSTROUTING jumps; idempotent (an old copy goes first). */
export async function setupIpMasq(t: MasqTarget): Promise<void> {
  await teardownIpMasq(t.network, t.containerId);
  const chain = masqChainName(t.network, t.containerId);
  const comment = `mycni ${t.network} ${t.containerId}`.slice(0, 255);
  for (const family of [4, 6] as const) {
    const addrs = t.addrs.filter((a) => a.family === family);
    if (!addrs.length) continue;
    await restore(family, [["nat", [
      `:${chain} - [0:0]`,
      ...addrs.map((a) => `-A ${chain} -d ${a.cidr} -j ACCEPT`),
      `-A ${chain} ! -d ${MULTICAST[family]} -j MASQUERADE`,
      ...addrs.map((a) =>
        `-A POSTROUTING -s ${a.ip} -m comment --comment "${comment}" -j ${chain}`
      ),
    ]]]);
  }
}

/** Removes the attachment's chain and its jumps; nothing there is success. */
export async function teardownIpMasq(network: string, containerId: string): Promise<void> {
  const chain = masqChainName(network, containerId);
  for (const family of [4, 6] as const) {
    const saved = await saveNat(family);
    if (!saved.includes(`:${chain} `)) continue;
    const jumps = saved.split("\n").filter((l) =>
      l.startsWith("-A POSTROUTING ") && l.endsWith(`-j ${chain}`)
    );
    await restore(family, [["nat", [
      ...jumps.map((l) => l.replace(/^-A /, "-D ")),
      `-F ${chain}`,
      `-X ${chain}`,
    ]]]);
  }
}

/** Whether the attachment's chain exists in every family it has addresses in (for CHECK). */
export async function hasIpMasq(
  network: string,
  containerId: string,
  families: readonly Family[],
): Promise<boolean> {
  const chain = masqChainName(network, containerId);
  for (const family of families) {
    if (!(await saveNat(family)).includes(`-j ${chain}`)) return false;
  }
  return true;
}

/**
 * The nat table as `iptables-save` prints it. A kernel without IPv6 has no ip6tables rules to
 * find (empty); any other failure is thrown: a teardown that cannot read the rules must say so,
 * not report success while the chain stays behind.
 */
async function saveNat(family: Family): Promise<string> {
  if (family === 6 && !ipv6Present()) return "";
  return await run([SAVE[family], "-t", "nat"]);
}

function ipv6Present(): boolean {
  try {
    Deno.statSync("/proc/sys/net/ipv6");
    return true;
  } catch {
    return false;
  }
}
