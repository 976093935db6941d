// nftables through the `nft` program: one `nft -f -` per change (a transaction: all of it or
// none), the table read back from the kernel (elements included) to check it, named counters
// read back for /metrics, and the table removed on uninstall.
import { run, runOutput } from "../process/run.ts";
import type { NftChain, NftSet, NftTable } from "./ruleset.ts";

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

/** A table as the kernel holds it, in the model of lib/nft/ruleset.ts, and its counters. */
export interface KernelTable {
  /**
   * Sets with their type, `interval` flag and elements as we write them (`10.0.0.1`,
   * `a . b`, `k : jump c`, `10.0.0.0/8`, `a-b`: interval elements as nft prints them, which
   * may be split or joined differently from what was loaded), a set with a timeout as dynamic
   * (its timeout and size, its elements, the kernel's, not read); limits with their spec;
   * chains with their hook line in
   * the form `type T hook H priority P; policy V;` (P a number: 0 for `filter`) and, as their
   * rules, each rule's comment ("" when it has none):
   * nft prints a rule's statements differently from how they were written, its comment as is.
   */
  readonly table: NftTable;
  /** Packets of each named counter. */
  readonly counters: ReadonlyMap<string, number>;
}

/**
 * `nft -j list table FAMILY NAME` as a {@linkcode KernelTable}; undefined when there is no such
 * table.
 *
 * @example
 * (await readTable("inet", "mycni"))?.table.sets.get("ingress4")?.elements.size; // 12
 */
export async function readTable(family: string, table: string): Promise<KernelTable | undefined> {
  const out = await runOutput(["nft", "-j", "list", "table", family, table]);
  if (out.code !== 0) {
    if (/No such file or directory/.test(out.stderr)) return undefined;
    throw new Error(
      `nft -j list table ${family} ${table} exited ${out.code}: ${out.stderr.trim()}`,
    );
  }
  return parseTableJson(`${family} ${table}`, JSON.parse(out.stdout));
}

/** One object of `nft -j` output (libnftables-json(5)), reduced to what the model needs. */
type JsonObject = Record<string, unknown>;

/**
 * The table `name` ("inet mycni") out of `nft -j list table` output (pure: exported for tests).
 *
 * @example
 * parseTableJson("inet mycni", JSON.parse(stdout)).table.chains.get("forward")?.decl;
 * // "type filter hook forward priority 0; policy accept;"
 */
export function parseTableJson(name: string, json: unknown): KernelTable {
  const items = ((json as { nftables?: unknown[] }).nftables ?? []) as Record<string, JsonObject>[];
  const sets = new Map<string, NftSet>();
  const chains = new Map<string, { decl?: string; rules: string[] }>();
  const counters = new Map<string, number>();
  const limits = new Map<string, string>();
  for (const item of items) {
    if (item.set || item.map) {
      const s = (item.set ?? item.map) as JsonObject;
      sets.set(String(s.name), parseSet(s, item.map !== undefined));
    } else if (item.chain) {
      const c = item.chain;
      chains.set(String(c.name), { ...(c.hook ? { decl: chainDecl(c) } : {}), rules: [] });
    } else if (item.rule) {
      const r = item.rule;
      // nft lists every chain before the first rule.
      chains.get(String(r.chain))?.rules.push(typeof r.comment === "string" ? r.comment : "");
    } else if (item.counter) {
      counters.set(String(item.counter.name), Number(item.counter.packets ?? 0));
    } else if (item.limit) {
      limits.set(String(item.limit.name), limitSpec(item.limit));
    }
  }
  const table: NftTable = {
    name,
    counters: [...counters.keys()],
    limits,
    sets,
    chains: chains as Map<string, NftChain>,
  };
  return { table, counters };
}

/** A limit as nft writes it: `rate 100/second burst 100 packets` (`rate 1 mbytes/second ...`). */
function limitSpec(l: JsonObject): string {
  const unit = l.rate_unit === undefined ? "" : ` ${l.rate_unit}`;
  const burstUnit = l.burst_unit === undefined ? "packets" : String(l.burst_unit);
  const inv = l.inv === true ? "over " : "";
  return `rate ${inv}${l.rate}${unit}/${l.per} burst ${l.burst ?? 0} ${burstUnit}`;
}

function parseSet(s: JsonObject, isMap: boolean): NftSet {
  const key = Array.isArray(s.type) ? s.type.join(" . ") : String(s.type);
  const type = isMap ? `${key} : ${s.map}` : key;
  const flags = Array.isArray(s.flags) ? s.flags : [];
  const interval = flags.includes("interval");
  // nft -j lists `flags dynamic,timeout` as ["timeout"]: a timeout is what makes a set ours to
  // declare and the kernel's to fill (its elements are not read).
  if (flags.includes("timeout") || flags.includes("dynamic")) {
    const dynamic = { timeout: Number(s.timeout ?? 0), size: Number(s.size ?? 0) };
    return { kind: isMap ? "map" : "set", type, interval, elements: new Map(), dynamic };
  }
  const elements = new Map<string, string>();
  for (const e of (s.elem ?? []) as unknown[]) {
    if (isMap && Array.isArray(e)) {
      const k = elementText(e[0]);
      elements.set(k, `${k} : ${verdictText(e[1])}`);
    } else {
      const text = elementText(e);
      elements.set(text, text);
    }
  }
  return { kind: isMap ? "map" : "set", type, interval, elements };
}

/** An element's key as we write it: `10.0.0.1`, `a . b`, `10.0.0.0/8`, `10.0.0.1-10.0.0.9`. */
function elementText(e: unknown): string {
  if (typeof e !== "object" || e === null) return String(e);
  const o = e as JsonObject;
  if (o.elem) return elementText((o.elem as JsonObject).val);
  if (o.prefix) {
    const p = o.prefix as { addr: unknown; len: number };
    return `${elementText(p.addr)}/${p.len}`;
  }
  if (Array.isArray(o.range)) return `${elementText(o.range[0])}-${elementText(o.range[1])}`;
  if (Array.isArray(o.concat)) return o.concat.map(elementText).join(" . ");
  return JSON.stringify(e);
}

/** A map's value as we write it: `jump ing_1f`, `accept`. */
function verdictText(v: unknown): string {
  if (typeof v !== "object" || v === null) return String(v);
  const [verdict, arg] = Object.entries(v as JsonObject)[0] ?? ["?", null];
  const target = (arg as { target?: string } | null)?.target;
  return target === undefined ? verdict : `${verdict} ${target}`;
}

function chainDecl(c: JsonObject): string {
  return `type ${c.type} hook ${c.hook} priority ${c.prio}; policy ${c.policy ?? "accept"};`;
}
