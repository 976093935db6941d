// DESIGN.md "Layout" on the real module graph: `deno info --json` of the two entries and of every
// file under lib/, one test per rule, each failing with every import that breaks it (importer ->
// imported, and the way there when the importer is reached through others).
//
// Run time or types only: deno info lists a dependency with `code` when the importer loads the
// module as it runs, and with `type` alone for `import type` and `export type ... from`, which are
// erased (nothing is loaded). It counts `import { type X }` as code: write `import type` for an
// import of types only.
import { fileURLToPath, pathToFileURL } from "node:url";
import { assert } from "../harness/assert.ts";

const ROOT_URL = new URL("../../", import.meta.url);
const ROOT = fileURLToPath(ROOT_URL);

/** One import: the importer and the imported (repo paths, `node:x`, `npm:x`), and its kind. */
interface Edge {
  readonly from: string;
  readonly to: string;
  /** Loaded at run time (not only `import type`). */
  readonly code: boolean;
}

/** What we read of `deno info --json`. */
interface DenoInfo {
  readonly modules: readonly {
    readonly specifier: string;
    readonly dependencies?: readonly {
      readonly specifier: string;
      readonly code?: { readonly specifier?: string };
      readonly type?: { readonly specifier?: string };
    }[];
  }[];
}

interface Graph {
  /** The entries and every file under lib/, repo paths. */
  readonly files: readonly string[];
  /** Every module deno info read. */
  readonly modules: ReadonlySet<string>;
  readonly edges: readonly Edge[];
}

let graph: Promise<Graph> | undefined;

/** The graph, read once for all the tests of this file. */
function moduleGraph(): Promise<Graph> {
  return graph ??= readGraph();
}

async function readGraph(): Promise<Graph> {
  const files = ["mycni.ts", "init.ts", ...await listTs("lib")];
  // deno info takes one root: a scratch module that imports them all.
  const dir = await Deno.makeTempDir({ prefix: "mycni-graph-" });
  try {
    const root = `${dir}/all.ts`;
    const imports = files.map((f) => `import "${new URL(f, ROOT_URL).href}";\n`);
    await Deno.writeTextFile(root, imports.join(""));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--no-config", "--no-lock", root],
    }).output();
    const text = new TextDecoder();
    if (!out.success) throw new Error(`deno info ${root} failed: ${text.decode(out.stderr)}`);
    const info = JSON.parse(text.decode(out.stdout)) as DenoInfo;
    const rootUrl = pathToFileURL(root).href;
    const edges: Edge[] = [];
    for (const m of info.modules) {
      if (m.specifier === rootUrl) continue;
      for (const d of m.dependencies ?? []) {
        const to = d.code?.specifier ?? d.type?.specifier ?? d.specifier;
        edges.push({ from: nameOf(m.specifier), to: nameOf(to), code: d.code !== undefined });
      }
    }
    return { files, modules: new Set(info.modules.map((m) => nameOf(m.specifier))), edges };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every .ts file under `dir` (a repo path), sorted. */
async function listTs(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(ROOT + dir)) {
    if (e.isDirectory) out.push(...await listTs(`${dir}/${e.name}`));
    else if (e.name.endsWith(".ts")) out.push(`${dir}/${e.name}`);
  }
  return out.sort();
}

/** A repo path for a module of the repo, the specifier for anything else (`node:path`). */
function nameOf(specifier: string): string {
  return specifier.startsWith(ROOT_URL.href) ? specifier.slice(ROOT_URL.href.length) : specifier;
}

/** `lib/net` for lib/net/route.ts; an entry or an outside module is its own room. */
function roomOf(name: string): string {
  const m = /^lib\/[^/]+/.exec(name);
  return m ? m[0] : name;
}

/**
 * The imports by which modules reached from `starts` (over the edges `follow` takes) import a
 * module `forbidden` names, each as the way there: "a.ts -> b.ts", or "a.ts -> x.ts -> b.ts"
 * when the importer is itself reached from a start. A type-only import says so.
 */
function forbiddenImports(
  g: Graph,
  starts: readonly string[],
  opts: { follow: (e: Edge) => boolean; forbidden: (name: string) => boolean },
): string[] {
  const out = new Map<string, Edge>();
  const from = new Map<string, Edge | undefined>(starts.map((s) => [s, undefined]));
  const queue = [...starts];
  while (queue.length > 0) {
    const at = queue.shift()!;
    for (const e of g.edges) {
      if (e.from !== at || !opts.follow(e)) continue;
      if (opts.forbidden(e.to)) {
        out.set(`${e.from} ${e.to}`, e);
      } else if (!from.has(e.to)) {
        from.set(e.to, e);
        queue.push(e.to);
      }
    }
  }
  return [...out.values()].map((e) => {
    const way = [e.to, e.from];
    for (let up = from.get(e.from); up; up = from.get(up.from)) way.push(up.from);
    return way.reverse().join(" -> ") + (e.code ? "" : " (import type)");
  });
}

/** Throws `rule` with one line per offending import, when there are any. */
function assertNone(rule: string, offending: readonly string[]): void {
  if (offending.length > 0) throw new Error(`${rule}:\n  ${offending.join("\n  ")}`);
}

const inRooms = (rooms: readonly string[]) => (name: string) => rooms.includes(roomOf(name));

/** One "never" of DESIGN.md: what the modules in `from` must not reach, and why. */
interface Never {
  readonly name: string;
  readonly why: string;
  /** Rooms (`lib/kube`) or files whose imports are followed. */
  readonly from: readonly string[];
  /** Run-time imports only (type-only ones load nothing), or every import. */
  readonly runTimeOnly: boolean;
  readonly forbidden: (name: string) => boolean;
}

const kernel = inRooms(["lib/net", "lib/nft", "lib/process"]);
const agent = inRooms(["lib/kube", "lib/node", "lib/policy"]);

const NEVERS: readonly Never[] = [
  {
    name:
      "lib/ipam, lib/cni, lib/policy and lib/kube load nothing of lib/net, lib/nft or lib/process",
    why:
      "Run-time imports of net, nft or process (they touch no network state, their tests need no root)",
    from: ["lib/ipam", "lib/cni", "lib/policy", "lib/kube"],
    runTimeOnly: true,
    // The pure table model (and its layered elements) is allowed, and what it loads is followed
    // like the rest.
    forbidden: (name) =>
      kernel(name) && name !== "lib/nft/ruleset.ts" && name !== "lib/nft/layered_elements.ts",
  },
  {
    name: "lib/ipam imports nothing of lib/net, not even a type",
    why: "Imports of net from ipam (it touches only its own files, through lib/sys)",
    from: ["lib/ipam"],
    runTimeOnly: false,
    forbidden: inRooms(["lib/net"]),
  },
  {
    name: "lib/net imports nothing of lib/cni",
    why:
      "Imports of cni from net (the kernel layer knows no CNI error codes: the plugin maps them)",
    from: ["lib/net"],
    runTimeOnly: false,
    forbidden: inRooms(["lib/cni"]),
  },
  {
    name: "lib/kube imports nothing of lib/node",
    why: "Imports of node from kube (the API client knows nothing of the agent)",
    from: ["lib/kube"],
    runTimeOnly: false,
    forbidden: inRooms(["lib/node"]),
  },
  {
    name: "mycni.ts imports nothing of lib/kube, lib/node, lib/policy, npm: or node:",
    why:
      "Imports in the plugin's graph of the agent's modules or packages (paid on every ADD and DEL)",
    from: ["mycni.ts"],
    runTimeOnly: false,
    forbidden: (name) => agent(name) || name.startsWith("npm:") || name.startsWith("node:"),
  },
];

Deno.test("deno info sees every file under lib/ and tells run-time imports from type-only ones", async () => {
  const g = await moduleGraph();
  assertNone("Files deno info did not read", g.files.filter((f) => !g.modules.has(f)));
  assert(g.edges.some((e) => e.code) && g.edges.some((e) => !e.code), "no type-only imports read");
  const plugin = forbiddenImports(g, ["mycni.ts"], {
    follow: () => true,
    forbidden: (name) => name === "lib/plugin/plugin.ts",
  });
  assert(plugin.length > 0, "mycni.ts does not reach lib/plugin/plugin.ts");
});

for (const never of NEVERS) {
  Deno.test(never.name, async () => {
    const g = await moduleGraph();
    const starts = g.files.filter((f) => never.from.includes(roomOf(f)) || never.from.includes(f));
    assertNone(
      never.why,
      forbiddenImports(g, starts, {
        follow: (e) => e.code || !never.runTimeOnly,
        forbidden: never.forbidden,
      }),
    );
  });
}

Deno.test("lib/ imports nothing outside lib/ but node: built-ins and npm: packages", async () => {
  const g = await moduleGraph();
  const outside = g.edges.filter((e) =>
    e.from.startsWith("lib/") && !/^(lib\/|node:|npm:)/.test(e.to)
  );
  assertNone(
    "Imports of entries, tests, scripts or remote modules from lib/",
    outside.map((e) => `${e.from} -> ${e.to}`),
  );
});

Deno.test("no import cycle between rooms (lib/<room>, the entries)", async () => {
  const g = await moduleGraph();
  const across = g.edges.filter((e) => roomOf(e.from) !== roomOf(e.to));
  const rooms = new Map<string, Set<string>>();
  for (const e of across) {
    rooms.set(roomOf(e.from), (rooms.get(roomOf(e.from)) ?? new Set()).add(roomOf(e.to)));
  }
  const offending: string[] = [];
  for (const cycle of roomCycles(rooms)) {
    // Per pair of rooms in the cycle, fewest imports first: the one that closes it is usually
    // a lone import against the grain.
    const pairs = new Map<string, Edge[]>();
    for (const e of across) {
      if (!cycle.has(roomOf(e.from)) || !cycle.has(roomOf(e.to))) continue;
      const pair = `${roomOf(e.from)} -> ${roomOf(e.to)}`;
      pairs.set(pair, [...pairs.get(pair) ?? [], e]);
    }
    offending.push(`cycle ${[...cycle].join(", ")}:`);
    for (const [pair, edges] of [...pairs].sort((a, b) => a[1].length - b[1].length)) {
      offending.push(`  ${pair}, ${edges.length} import(s):`);
      for (const e of edges.slice(0, 3)) {
        offending.push(`    ${e.from} -> ${e.to}${e.code ? "" : " (import type)"}`);
      }
      if (edges.length > 3) offending.push(`    ... and ${edges.length - 3} more`);
    }
  }
  assertNone("Imports that close a cycle between rooms (dependencies point one way)", offending);
});

/** The groups of rooms that import each other, directly or through others (Tarjan's SCCs). */
function roomCycles(imports: ReadonlyMap<string, ReadonlySet<string>>): Set<string>[] {
  const index = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], onStack = new Set<string>(), out: Set<string>[] = [];
  const visit = (room: string) => {
    index.set(room, index.size);
    low.set(room, index.get(room)!);
    stack.push(room);
    onStack.add(room);
    for (const to of imports.get(room) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(room, Math.min(low.get(room)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(room, Math.min(low.get(room)!, index.get(to)!));
      }
    }
    if (low.get(room) !== index.get(room)) return;
    const group = new Set<string>();
    for (let r = stack.pop()!;; r = stack.pop()!) {
      onStack.delete(r);
      group.add(r);
      if (r === room) break;
    }
    if (group.size > 1) out.push(group);
  };
  for (const room of imports.keys()) if (!index.has(room)) visit(room);
  return out;
}
