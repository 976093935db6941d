// Build step for the plugin's bundle: every top-level function becomes a parenthesized function
// expression, defined at the top of the file.
//
// Why: the plugin is a fresh process per pod. Deno keeps a V8 code cache per module, made right
// after the module is compiled, so it holds only what V8 compiled eagerly; every function that
// V8 compiled lazily (on first call) is compiled again in every ADD and DEL: ~4.5 ms of an ADD
// here (bench/plugin_latency.ts). V8 compiles a parenthesized function expression eagerly, so
// with this step the cache holds the compiled functions and a run only deserializes them.
// Moving the definitions to the top keeps what declarations gave: each function exists before
// any top-level statement runs.
//
// But not every function: what the cache holds is deserialized on every start (~1 ms for the
// plugin's ~125 kB of compiled functions, under load), so functions of COLD_MODULES (code that
// an ADD or DEL with the default configuration never runs: CHECK, GC, STATUS, delegated IPAM,
// ipMasq, the MTU lookup) stay lazy: they cost a compile only in the runs that call them.
//
// Works on `deno bundle` (esbuild) output, where a top-level declaration starts at column 0 and
// its closing brace is a `}` line at column 0, and each module starts with a `// path.ts` line;
// anything else is refused, failing the build.
//   deno run --allow-read --allow-write scripts/eager_functions.ts bin/.mycni.js

const FUNCTION = /^(async )?function\*? ?([\w$]+)\(/;
const MODULE = /^\/\/ ([\w./-]+\.[jt]s)$/;

/** The plugin's modules whose functions stay lazy (see above). */
export const COLD_MODULES: readonly string[] = [
  "lib/plugin/check.ts",
  "lib/plugin/gc.ts",
  "lib/plugin/status.ts",
  "lib/plugin/delegated_ipam.ts",
  "lib/net/iptables.ts",
  "lib/net/tools.ts",
  "lib/net/mtu.ts",
  "lib/process/run.ts",
];

/**
 * The bundle text with its top-level functions hoisted as eagerly compiled expressions, but for
 * those of the modules in `opts.cold`, which are left as they are.
 */
export function eagerFunctions(bundle: string, opts: { cold?: readonly string[] } = {}): string {
  const cold = new Set(opts.cold ?? []);
  const hoisted: string[] = [];
  const rest: string[] = [];
  let open: { name: string; lines: string[] } | undefined;
  let module = "";
  for (const line of bundle.split("\n")) {
    if (open) {
      open.lines.push(line === "}" ? "});" : line);
      if (line === "}") {
        hoisted.push(...open.lines);
        open = undefined;
      }
      continue;
    }
    module = MODULE.exec(line)?.[1] ?? module;
    const m = FUNCTION.exec(line);
    if (!m || cold.has(module)) {
      rest.push(line);
      continue;
    }
    const expr = `var ${m[2]} = (${line}`;
    if (line.endsWith("}")) hoisted.push(`${expr});`);
    else open = { name: m[2], lines: [expr] };
  }
  if (open) throw new Error(`function ${open.name} has no closing "}" at column 0`);
  if (hoisted.length === 0) throw new Error("no top-level functions found: not a bundle?");
  // A shebang must stay the first line.
  const shebang = rest[0]?.startsWith("#!") ? [rest.shift()!] : [];
  return [...shebang, ...hoisted, ...rest].join("\n");
}

if (import.meta.main) {
  const [file] = Deno.args;
  if (!file) throw new Error("usage: eager_functions.ts BUNDLE.js");
  Deno.writeTextFileSync(file, eagerFunctions(Deno.readTextFileSync(file), { cold: COLD_MODULES }));
}
