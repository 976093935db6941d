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
// Works on `deno bundle` (esbuild) output, where a top-level declaration starts at column 0 and
// its closing brace is a `}` line at column 0; anything else is refused, failing the build.
//   deno run --allow-read --allow-write scripts/eager_functions.ts bin/.mycni.js

const FUNCTION = /^(async )?function\*? ?([\w$]+)\(/;

/** The bundle text with its top-level functions hoisted as eagerly compiled expressions. */
export function eagerFunctions(bundle: string): string {
  const hoisted: string[] = [];
  const rest: string[] = [];
  let open: { name: string; lines: string[] } | undefined;
  for (const line of bundle.split("\n")) {
    if (open) {
      open.lines.push(line === "}" ? "});" : line);
      if (line === "}") {
        hoisted.push(...open.lines);
        open = undefined;
      }
      continue;
    }
    const m = FUNCTION.exec(line);
    if (!m) {
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
  Deno.writeTextFileSync(file, eagerFunctions(Deno.readTextFileSync(file)));
}
