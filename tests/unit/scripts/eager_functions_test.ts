import { COLD_MODULES, eagerFunctions } from "../../../scripts/eager_functions.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../../harness/assert.ts";

const BUNDLE = [
  "#!/usr/bin/env -S deno run",
  "// lib/a.ts",
  "var LIMIT = 3;",
  "function twice(x) {",
  "  return inner(x) * 2;",
  "  function inner(y) {",
  "    return y;",
  "  }",
  "}",
  "async function later() { return twice(LIMIT); }",
  "// main.ts",
  "globalThis.__eagerResult = [twice(1), await later(), early()];",
  "function early() {",
  "  return `function notTopLevel() {",
  "}`.length;",
  "}",
].join("\n");

Deno.test("eagerFunctions() hoists top-level functions as parenthesized expressions", () => {
  const out = eagerFunctions(BUNDLE).split("\n");
  assertEquals(out[0], "#!/usr/bin/env -S deno run");
  assertEquals(out[1], "var twice = (function twice(x) {");
  assert(out.includes("var later = (async function later() { return twice(LIMIT); });"));
  assert(out.includes("var early = (function early() {"));
  // Nested functions are left alone: only column-0 declarations are rewritten.
  assert(out.includes("  function inner(y) {"));
  assert(out.indexOf("var LIMIT = 3;") > out.indexOf("var early = (function early() {"));
});

Deno.test("the rewritten bundle behaves as the original, calls before definitions included", async () => {
  const results = [];
  for (const text of [BUNDLE, eagerFunctions(BUNDLE)]) {
    const file = await Deno.makeTempFile({ suffix: ".js" });
    try {
      await Deno.writeTextFile(file, text.split("\n").slice(1).join("\n"));
      await import(`file://${file}`);
      results.push((globalThis as { __eagerResult?: number[] }).__eagerResult);
    } finally {
      await Deno.remove(file);
    }
  }
  assertEquals(results[0], [2, 6, 26]);
  assertEquals(results[1], results[0]);
});

Deno.test("eagerFunctions() refuses text it does not understand", () => {
  const unclosed = assertThrows(() => eagerFunctions("function open() {\n  return 1;\n"));
  assertMatch(unclosed.message, /no closing/);
  const none = assertThrows(() => eagerFunctions("const x = 1;\n"));
  assertMatch(none.message, /no top-level functions/);
});

Deno.test("eagerFunctions() leaves the functions of cold modules lazy, and the bundle runs", async () => {
  const bundle = [
    "// lib/hot.ts",
    "function hot() {",
    "  return cold() + 1;",
    "}",
    "// lib/cold.ts",
    "function cold() {",
    "  return 41;",
    "}",
    "async function coldToo() { return 0; }",
    "// main.ts",
    "globalThis.__coldResult = hot();",
  ].join("\n");
  const out = eagerFunctions(bundle, { cold: ["lib/cold.ts"] });
  const lines = out.split("\n");
  assertEquals(lines[0], "var hot = (function hot() {");
  assert(lines.includes("function cold() {"));
  assert(lines.includes("async function coldToo() { return 0; }"));
  assert(!out.includes("var cold ="));
  const file = await Deno.makeTempFile({ suffix: ".js" });
  try {
    await Deno.writeTextFile(file, out);
    await import(`file://${file}`);
    assertEquals((globalThis as { __coldResult?: number }).__coldResult, 42);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("every cold module of the plugin is in its bundle under that name", async () => {
  // A renamed or moved module would silently become eager again.
  const entry = new URL("../../../mycni.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--no-config", "--platform", "deno", entry],
    stdout: "piped",
  }).output();
  const modules = new TextDecoder().decode(out.stdout).split("\n").filter((l) =>
    /^\/\/ \S+\.ts$/.test(l)
  )
    .map((l) => l.slice(3));
  for (const cold of COLD_MODULES) assert(modules.includes(cold), `${cold} not in ${modules}`);
});
