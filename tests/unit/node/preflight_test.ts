// The agent's start-up check of the programs it runs, against a fake PATH of temp directories.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { join } from "node:path";
import { createLogger } from "../../../lib/log/logger.ts";
import { AGENT_TOOLS, checkTools, findMissingTools } from "../../../lib/node/preflight.ts";

/** Two PATH directories holding executables named `names`, split between them. */
async function fakePath(names: readonly string[]): Promise<{ path: string } & AsyncDisposable> {
  const root = await Deno.makeTempDir({ prefix: "mycni-preflight-" });
  const dirs = [join(root, "sbin"), join(root, "bin")];
  for (const d of dirs) await Deno.mkdir(d);
  for (const [i, name] of names.entries()) {
    await Deno.writeTextFile(join(dirs[i % 2], name), "#!/bin/true\n", { mode: 0o755 });
  }
  return {
    // An empty entry and a missing directory are ignored, as the shell ignores them.
    path: ["", join(root, "nowhere"), ...dirs].join(":"),
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

function capture() {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: createLogger((l) => lines.push(JSON.parse(l))) };
}

const ALL = AGENT_TOOLS.map((t) => t.name);

Deno.test("checkTools() logs nothing and passes when every tool is on PATH", async () => {
  await using fake = await fakePath(ALL);
  const { lines, log } = capture();
  assertEquals(checkTools(fake.path, log), true);
  assertEquals(lines, []);
});

Deno.test("checkTools() warns once per missing optional tool and still passes", async () => {
  await using fake = await fakePath(ALL.filter((n) => !n.startsWith("ip6tables-")));
  const { lines, log } = capture();
  assertEquals(checkTools(fake.path, log), true);
  assertEquals(
    lines.map((l) => [l.level, l.msg, l.program]),
    [
      ["warn", "program not found on PATH", "ip6tables-restore"],
      ["warn", "program not found on PATH", "ip6tables-save"],
    ],
  );
  assertEquals(lines[0].path, fake.path);
});

Deno.test("checkTools() fails when iptables-restore or -save is missing, one line each", async () => {
  await using fake = await fakePath(
    ALL.filter((n) => n !== "iptables-restore" && n !== "iptables-save"),
  );
  const { lines, log } = capture();
  assertEquals(checkTools(fake.path, log), false);
  assertEquals(
    lines.map((l) => [l.level, l.program]),
    [["error", "iptables-restore"], ["error", "iptables-save"]],
  );
  assertEquals(lines[0].msg, "required program not found on PATH");
  assertEquals(typeof lines[0].usedFor, "string");
});

Deno.test("findMissingTools() skips a non-executable file and a directory of that name", async () => {
  await using fake = await fakePath(
    ALL.filter((n) => n !== "iptables-restore" && n !== "iptables-save"),
  );
  const dir = fake.path.split(":").at(-1)!;
  await Deno.writeTextFile(join(dir, "iptables-restore"), "not a program\n", { mode: 0o644 });
  await Deno.mkdir(join(dir, "iptables-save"));
  assertEquals(findMissingTools(fake.path).map((t) => t.name), [
    "iptables-restore",
    "iptables-save",
  ]);
});

Deno.test("findMissingTools() follows symlinks, as iptables-save -> /etc/alternatives does", async () => {
  await using fake = await fakePath(ALL.filter((n) => n !== "iptables-save"));
  const dir = fake.path.split(":").at(-1)!;
  await Deno.writeTextFile(join(dir, "xtables-nft-multi"), "#!/bin/true\n", { mode: 0o755 });
  await Deno.symlink(join(dir, "xtables-nft-multi"), join(dir, "iptables-save"));
  assertEquals(findMissingTools(fake.path), []);
  await Deno.remove(join(dir, "xtables-nft-multi")); // now a dangling link: not a program
  assertEquals(findMissingTools(fake.path).map((t) => t.name), ["iptables-save"]);
});

Deno.test("the agent needs no ip: its kernel work is rtnetlink", () => {
  assertEquals(ALL.includes("ip"), false);
});

Deno.test("findMissingTools() finds everything missing on an empty PATH", () => {
  assertEquals(findMissingTools("").map((t) => t.name), ALL);
});
