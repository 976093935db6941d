// Keeps the kernel's `inet mycni` table equal to the desired one: the difference from what was
// last applied on every change; the whole table when what the kernel holds is not known (start,
// after a failed transaction) or, checked on every periodic resync by reading the table back,
// differs from what was applied (someone removed a chain or an element). A difference of set and
// map elements only (a pod that starts or stops, a label or binding change) goes as one
// nfnetlink batch, with no `nft` process (lib/nft/elements.ts); anything else is one `nft -f`
// transaction. Both are atomic, so a failure leaves the old table whole and the next run heals
// it (memory is forgotten: the next apply loads the table whole).
//
// Writes are serialized: an apply and a patch (the admission's fast path, which edits elements
// of the table last applied) never interleave, so each is computed from what the kernel holds.
//
// Rules are compared through a marker: each rule we load carries `comment "mycni:<digest of its
// text>"`. nft prints a rule's statements in its own words (`meta l4proto tcp th dport 80` comes
// back as `tcp dport 80`, and the words change between nft versions), but a comment is stored
// by the kernel as opaque bytes and printed back verbatim. So a rule missing, added by someone
// else (no marker), replaced, reordered or left over from another version of ours (another
// digest) is a difference; only a rule rewritten on purpose with our comment copied would pass.
import { type Family, formatIp, parseCidr, parseIp } from "../ip/cidr.ts";
import { cidrRange, formatRange, type IpRange, mergeRanges } from "../ip/range.ts";
import { nameDigest } from "../sys/digest.ts";
import { applyNft, type KernelTable, readCounters, readTable } from "./cli.ts";
import { applyElementChanges, type ElementChange } from "./elements.ts";
import { elementChanges, withElementChanges } from "./element_diff.ts";
import {
  NFT_TABLE,
  type NftChain,
  type NftSet,
  type NftTable,
  renderFullTable,
  renderTableChange,
} from "./ruleset.ts";

/** How tables reach the kernel: the `nft` program (a fake in tests). */
export interface NftRunner {
  /** Runs `text` as one transaction; throws when nft refuses it (the kernel keeps its table). */
  apply(text: string): Promise<void>;
  /** The table as the kernel holds it; undefined when there is none. */
  read(): Promise<KernelTable | undefined>;
  /** The table's named counters (packets); empty when there is no table. */
  counters(): Promise<Map<string, number>>;
  /**
   * Writes element changes as one nfnetlink batch; throws when the kernel refuses it (then it
   * applied none). Without it, element changes go through `apply` like any other.
   */
  elements?(changes: readonly ElementChange[]): void | Promise<void>;
}

/** {@linkcode NftRunner} of the agent's table: `nft` for structure, nfnetlink for elements. */
export const NFT_RUNNER: NftRunner = {
  apply: applyNft,
  read: () => readTable(NFT_TABLE.family, NFT_TABLE.name),
  counters: () => readCounters(NFT_TABLE.family, NFT_TABLE.name),
  elements: (changes) => applyElementChanges(changes),
};

/** How a change reached the kernel: one element batch, or an `nft -f` transaction. */
export type ApplyPath = "elements" | "nft";

/** What one {@linkcode TableSync.apply} did. */
export interface TableApplied {
  /** A transaction ran. */
  readonly changed: boolean;
  /** It loaded the table whole (the first, after a refused one, or to repair the kernel's). */
  readonly whole: boolean;
  /** How the kernel's table differed from the one last applied (a repair); often empty. */
  readonly differences: readonly string[];
  /** Why the counters could not be read before a whole reload zeroed them: their counts are lost. */
  readonly countersLost?: string;
  /** How the change went, when one did. */
  readonly path?: ApplyPath;
  /** Not applied: `stale` said the table was computed from an outdated state (run again). */
  readonly superseded?: boolean;
}

/** Options of one {@linkcode TableSync.apply}. */
export interface ApplyOptions {
  /** The periodic resync: read the kernel's table back first and repair any difference. */
  readonly verify: boolean;
  /**
   * Asked once no other write can come between it and this one: true when `table` must not be
   * applied any more (a patch since it was computed closed something it would reopen).
   */
  readonly stale?: () => boolean;
  /**
   * Called once the kernel holds `table`, before any other write may run (a patch waiting for
   * this one sees what it did): who waits for the table can know it has it before a patch that
   * would redo it.
   */
  readonly written?: () => void;
}

/** What one {@linkcode TableSync.patch} did. */
export interface TablePatched {
  /** The kernel holds the patch (an empty one too). False: nothing was written. */
  readonly applied: boolean;
  /** Why not, when not applied. */
  readonly reason?: string;
  /** How many element changes the batch held. */
  readonly changes: number;
}

/** Applies desired tables; remembers the last one applied. */
export interface TableSync {
  /**
   * Makes the kernel hold `table`. With `verify` (the periodic resync) it first reads the
   * kernel's table back and, when it is not the one last applied, loads `table` whole.
   */
  apply(table: NftTable, opts: ApplyOptions): Promise<TableApplied>;
  /**
   * Changes elements of the table last applied, as one element batch: `edit` gets that table
   * (as the kernel holds it) and returns the changes, or undefined when it cannot say them as
   * elements. Memory then holds the patched table, so the next apply starts from it. Nothing is
   * written (applied false) when no table is known yet, or without an element writer. A refused
   * batch throws and forgets memory, as a refused apply does.
   */
  patch(edit: (table: NftTable) => ElementChange[] | undefined): Promise<TablePatched>;
  /** The table's named counters (packets), counting across whole-table reloads. */
  counters(): Promise<Map<string, number>>;
}

/** What the kernel holds, as far as the next transaction is concerned. */
interface Check {
  /** Load the table whole. */
  readonly whole: boolean;
  /** Where the kernel's table is not the one last applied. */
  readonly differences: readonly string[];
  /** The counters before a whole reload (carried across it). */
  readonly before?: ReadonlyMap<string, number>;
  /** Why they could not be read. */
  readonly lost?: string;
}

/** How many differences a repair lists (a table someone flushed differs everywhere). */
const DIFFERENCES_LISTED = 10;

/**
 * A table sync over `runner`.
 *
 * @example
 * const tables = createTableSync();
 * await tables.apply(desiredTable(input), { verify: false });
 */
export function createTableSync(runner: NftRunner = NFT_RUNNER): TableSync {
  let last: { table: NftTable; marked: NftTable } | undefined;
  // A whole-table reload zeroes the kernel's counters: what they held is kept here.
  const carried = new Map<string, number>();
  const markers = createMarkers();

  /** Whether the kernel needs the table whole (`last` unknown or not what it holds), and why. */
  async function check(verify: boolean): Promise<Check> {
    if (last !== undefined && !verify) return { whole: false, differences: [] };
    try {
      if (last === undefined) {
        return { whole: true, differences: [], before: await runner.counters() };
      }
      const kernel = await runner.read();
      const differences = kernel === undefined
        ? [`table ${last.table.name} is missing`]
        : tableDifferences(last.table, kernel.table, markers.of);
      return { whole: differences.length > 0, differences, before: kernel?.counters };
    } catch (err) {
      // The kernel's table cannot be read: load ours whole (the counts it held are lost).
      const error = (err as Error).message;
      return { whole: true, differences: last ? [`cannot read it: ${error}`] : [], lost: error };
    }
  }

  // One write at a time: each waits for the one before it to settle.
  let queue: Promise<unknown> = Promise.resolve();
  function serialized<T>(write: () => Promise<T>): Promise<T> {
    const done = queue.then(write, write);
    queue = done.catch(() => {});
    return done;
  }

  async function apply(table: NftTable, opts: ApplyOptions): Promise<TableApplied> {
    if (opts.stale?.()) return { changed: false, whole: false, differences: [], superseded: true };
    const c = await check(opts.verify);
    const marked = markers.mark(table);
    // Elements only: one nfnetlink batch, no nft process (which reads the sets first).
    const changes = !c.whole && runner.elements ? elementChanges(last!.table, table) : undefined;
    if (changes !== undefined && changes.length > 0) {
      try {
        await runner.elements!(changes);
      } catch (err) {
        last = undefined; // the kernel kept its old table: reload whole next time
        throw err;
      }
      last = { table, marked };
      opts.written?.();
      return { changed: true, whole: false, differences: [], path: "elements" };
    }
    const text = changes !== undefined
      ? ""
      : c.whole
      ? renderFullTable(marked)
      : renderTableChange(last!.marked, marked);
    if (text === "") {
      last = { table, marked };
      opts.written?.();
      return { changed: false, whole: false, differences: [] };
    }
    try {
      await runner.apply(text);
    } catch (err) {
      // The kernel kept its old table, which we may no longer know exactly: reload next time.
      last = undefined;
      throw err;
    }
    last = { table, marked };
    opts.written?.();
    for (const [name, n] of c.before ?? []) carried.set(name, (carried.get(name) ?? 0) + n);
    return {
      changed: true,
      whole: c.whole,
      differences: c.differences.slice(0, DIFFERENCES_LISTED),
      ...(c.lost !== undefined ? { countersLost: c.lost } : {}),
      path: "nft",
    };
  }

  async function patch(
    edit: (table: NftTable) => ElementChange[] | undefined,
  ): Promise<TablePatched> {
    if (last === undefined) return { applied: false, reason: "no table applied yet", changes: 0 };
    if (!runner.elements) return { applied: false, reason: "no element writer", changes: 0 };
    const changes = edit(last.table);
    if (changes === undefined) {
      return { applied: false, reason: "not expressible as elements", changes: 0 };
    }
    if (changes.length === 0) return { applied: true, changes: 0 };
    try {
      await runner.elements(changes);
    } catch (err) {
      last = undefined;
      throw err;
    }
    const table = withElementChanges(last.table, changes);
    last = { table, marked: { ...last.marked, sets: table.sets } };
    return { applied: true, changes: changes.length };
  }

  return {
    apply: (table, opts) => serialized(() => apply(table, opts)),
    patch: (edit) => serialized(() => patch(edit)),
    async counters() {
      const now = await runner.counters();
      const out = new Map(carried);
      for (const [name, n] of now) out.set(name, (out.get(name) ?? 0) + n);
      return out;
    },
  };
}

/** Rule markers (see the top of the file), each rule text's digested once while it is in use. */
function createMarkers() {
  let known = new Map<string, string>();
  const of = (rule: string) => known.get(rule) ?? `mycni:${nameDigest(rule).slice(0, 16)}`;
  return {
    of,
    /** `table` with every rule carrying its marker; the markers of older tables are dropped. */
    mark(table: NftTable): NftTable {
      const next = new Map<string, string>();
      const chains = new Map<string, NftChain>();
      for (const [name, chain] of table.chains) {
        const rules = chain.rules.map((r) => {
          const m = of(r);
          next.set(r, m);
          return `${r} comment "${m}"`;
        });
        chains.set(name, { ...chain, rules });
      }
      known = next;
      return { ...table, chains };
    },
  };
}

/**
 * How the kernel's table (as {@linkcode readTable} reads it) differs from `want`, in words;
 * empty when it holds exactly that. Elements of interval sets are compared by the addresses they
 * cover, rules by their markers (`marker` of each wanted rule against the kernel's comments).
 * Counters are only checked for presence (a difference never removes one); limits by their
 * spec; dynamic sets by their declaration only (the kernel fills and expires their elements).
 *
 * @example
 * tableDifferences(applied, (await readTable("inet", "mycni"))!.table, marker);
 * // ["map ingress4: 1 element missing (10.244.1.7 : jump ing_1f)", "chain egr_2a is missing"]
 */
export function tableDifferences(
  want: NftTable,
  kernel: NftTable,
  marker: (rule: string) => string,
): string[] {
  const out: string[] = [];
  for (const c of want.counters) {
    if (!kernel.counters.includes(c)) out.push(`counter ${c} is missing`);
  }
  out.push(...limitDifferences(want.limits ?? new Map(), kernel.limits ?? new Map()));
  for (const [name, set] of want.sets) {
    const k = kernel.sets.get(name);
    if (!k) out.push(`${set.kind} ${name} is missing`);
    else out.push(...setDifferences(name, set, k));
  }
  for (const [name, set] of kernel.sets) {
    if (!want.sets.has(name)) out.push(`${set.kind} ${name} is not ours`);
  }
  for (const [name, chain] of want.chains) {
    const k = kernel.chains.get(name);
    if (!k) out.push(`chain ${name} is missing`);
    else out.push(...chainDifferences(name, chain, k, marker));
  }
  for (const name of kernel.chains.keys()) {
    if (!want.chains.has(name)) out.push(`chain ${name} is not ours`);
  }
  return out;
}

function limitDifferences(
  want: ReadonlyMap<string, string>,
  kernel: ReadonlyMap<string, string>,
): string[] {
  const out: string[] = [];
  for (const [name, spec] of want) {
    const k = kernel.get(name);
    if (k === undefined) out.push(`limit ${name} is missing`);
    else if (k !== spec) out.push(`limit ${name} is "${k}", not "${spec}"`);
  }
  for (const name of kernel.keys()) if (!want.has(name)) out.push(`limit ${name} is not ours`);
  return out;
}

function setDifferences(name: string, want: NftSet, kernel: NftSet): string[] {
  const what = `${want.kind} ${name}`;
  if (want.kind !== kernel.kind || want.type !== kernel.type || want.interval !== kernel.interval) {
    return [
      `${what} is declared ${kernel.kind} of ${kernel.type}${kernel.interval ? ", interval" : ""}`,
    ];
  }
  if (want.dynamic || kernel.dynamic) {
    // Its elements are the kernel's: only how they live is ours.
    const a = want.dynamic, b = kernel.dynamic;
    if (a?.timeout === b?.timeout && a?.size === b?.size) return [];
    const say = (d?: NftSet["dynamic"]) => d ? `timeout ${d.timeout}s, size ${d.size}` : "static";
    return [`${what} is declared ${say(b)}, not ${say(a)}`];
  }
  if (want.interval) {
    const a = coverage(want.elements.values()), b = coverage(kernel.elements.values());
    if (a.length === b.length && a.every((r, i) => r === b[i])) return [];
    return [`${what} covers ${b.join(", ") || "nothing"}, not ${a.join(", ") || "nothing"}`];
  }
  const kernelHas = new Set(kernel.elements.values());
  let missing = [...want.elements.values()].filter((e) => !kernelHas.has(e));
  let extra: string[] = [];
  if (missing.length > 0 || kernel.elements.size !== want.elements.size) {
    const wanted = new Set(want.elements.values());
    extra = [...kernel.elements.values()].filter((e) => !wanted.has(e));
  }
  if (missing.length > 0 && extra.length > 0) {
    // The same address written another way (IPv6 text has more than one form).
    const canonicalKernel = new Set(extra.map(canonical));
    const canonicalWant = new Set(missing.map(canonical));
    missing = missing.filter((e) => !canonicalKernel.has(canonical(e)));
    extra = extra.filter((e) => !canonicalWant.has(canonical(e)));
  }
  const out: string[] = [];
  if (missing.length > 0) out.push(`${what}: ${counted(missing, "missing")}`);
  if (extra.length > 0) out.push(`${what}: ${counted(extra, "not ours")}`);
  return out;
}

function chainDifferences(
  name: string,
  want: NftChain,
  kernel: NftChain,
  marker: (rule: string) => string,
): string[] {
  if (canonicalDecl(want.decl) !== canonicalDecl(kernel.decl)) {
    return [`chain ${name} is hooked as "${kernel.decl ?? "(no hook)"}"`];
  }
  const rules = want.rules.map(marker);
  if (rules.length === kernel.rules.length && rules.every((m, i) => m === kernel.rules[i])) {
    return [];
  }
  const ours = kernel.rules.filter((m) => rules.includes(m)).length;
  return [
    `chain ${name} has ${kernel.rules.length} rules (${ours} of ours), not its ${rules.length}`,
  ];
}

/** "2 elements missing (a, b)", listing a few. */
function counted(elements: readonly string[], what: string): string {
  const shown = elements.slice(0, 3).join(", ") + (elements.length > 3 ? ", ..." : "");
  return `${elements.length} element${elements.length === 1 ? "" : "s"} ${what} (${shown})`;
}

/** An element with every address in canonical text. */
function canonical(element: string): string {
  return element.split(" ").map((w) => {
    try {
      return w.includes(":") ? formatIp(parseIp(w)) : w;
    } catch {
      return w;
    }
  }).join(" ");
}

/** Interval elements as the merged ranges they cover, in order, as text. */
function coverage(elements: Iterable<string>): string[] {
  const byFamily = new Map<Family | 0, IpRange[]>([[0, []], [4, []], [6, []]]);
  for (const e of elements) {
    const [family, range] = elementRange(e);
    byFamily.get(family)!.push(range);
  }
  return [...byFamily].flatMap(([family, ranges]) =>
    mergeRanges(ranges).map((r) => family === 0 ? `${r.start}-${r.end}` : formatRange(family, r))
  );
}

/**
 * An interval element (`a`, `a/len`, `a-b`; addresses, or numbers such as ports) as a range, its
 * family 0 for numbers.
 *
 * @example
 * elementRange("10.0.0.0/30"); // [4, { start: 167772160n, end: 167772163n }]
 */
export function elementRange(e: string): [Family | 0, IpRange] {
  if (e.includes("/")) {
    const c = parseCidr(e);
    return [c.family, cidrRange(c)];
  }
  const [a, b = a] = e.split("-");
  if (/^[0-9]+$/.test(a) && /^[0-9]+$/.test(b)) return [0, { start: BigInt(a), end: BigInt(b) }];
  const start = parseIp(a), end = parseIp(b);
  return [start.family, { start: start.value, end: end.value }];
}

/** The numbers nft gives the standard priority names of the inet family (nft(8), CHAINS). */
const PRIORITIES: Record<string, number> = {
  raw: -300,
  mangle: -150,
  dstnat: -100,
  filter: 0,
  security: 50,
  srcnat: 100,
};

/** A hook line with its priority as a number (`filter` is 0, `srcnat + 5` is 105). */
function canonicalDecl(decl: string | undefined): string {
  if (decl === undefined) return "";
  return decl.replace(
    /priority ([a-z]+)(?: ([+-]) ([0-9]+))?;/,
    (all, name: string, sign?: string, n?: string) => {
      const base = PRIORITIES[name];
      if (base === undefined) return all;
      const offset = n === undefined ? 0 : Number(n) * (sign === "-" ? -1 : 1);
      return `priority ${base + offset};`;
    },
  ).replace(/\s+/g, " ").trim();
}
