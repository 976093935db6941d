// The Dockerfile without a Docker engine: it parses and lints clean, builds with the same script
// and Deno version as `make build`, and ships what the DaemonSet runs.
// deno-lint-ignore-file no-import-prefix -- test-only npm packages, pinned where they are used
import assert from "node:assert/strict";
import { posix } from "node:path";
import { type Dockerfile, DockerfileParser, type Instruction } from "npm:dockerfile-ast@0.7.1";
import { validate } from "npm:dockerfile-utils@0.16.3";
import { AGENT_TOOLS } from "../../../lib/node/preflight.ts";
import { agentPod, readRepoFile } from "./deploy_files.ts";

function parseDockerfile(): Dockerfile {
  return DockerfileParser.parse(readRepoFile("Dockerfile"));
}

/** The instructions of each stage, in order; index 0 is the first FROM's stage. */
function stages(df: Dockerfile): Instruction[][] {
  const out: Instruction[][] = [];
  for (const ins of df.getInstructions()) {
    if (ins.getKeyword() === "FROM") out.push([]);
    out.at(-1)?.push(ins);
  }
  return out;
}

/** A stage's base image with `${ARG}` replaced by the ARG's default value. */
function baseImage(df: Dockerfile, stage: Instruction[]): string {
  const defaults = new Map(
    df.getARGs().map((arg) => [arg.getProperty()?.getName(), arg.getProperty()?.getValue()]),
  );
  const image = stage[0].getArguments()[0].getValue();
  return image.replace(/\$\{?(\w+)\}?/g, (_, name) => defaults.get(name) ?? "");
}

/** The text of a stage's instructions with one keyword, continuation lines joined. */
function argsOf(stage: Instruction[], keyword: string): string[] {
  return stage.filter((i) => i.getKeyword() === keyword).map((i) => i.getArgumentsContent() ?? "");
}

Deno.test("Dockerfile parses and passes dockerfile-utils validation", () => {
  const text = readRepoFile("Dockerfile");
  assert.deepEqual(validate(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`), []);
});

Deno.test("Dockerfile builds with the pinned Deno of tools/deno/package.json", () => {
  const df = parseDockerfile();
  const want = JSON.parse(readRepoFile("tools/deno/package.json")).dependencies.deno;
  const image = baseImage(df, stages(df)[0]);
  assert.match(image, /^denoland\/deno:/);
  assert.ok(image.split("@")[0].endsWith(`-${want}`), `${image} is Deno ${want}`);
});

Deno.test("Dockerfile build stage runs scripts/build.sh and no deno compile of its own", () => {
  // scripts/build.sh is the one place that holds the compile flags.
  const df = parseDockerfile();
  const [build] = stages(df);
  const runs = argsOf(build, "RUN");
  assert.ok(
    runs.some((r) => /\bbash scripts\/build\.sh\b/.test(r)),
    "a RUN calls scripts/build.sh",
  );
  for (const ins of df.getInstructions()) {
    assert.doesNotMatch(ins.getArgumentsContent() ?? "", /deno\s+(compile|bundle)/);
  }
  assert.ok(argsOf(build, "COPY").some((c) => c.includes("scripts/build.sh")));
});

Deno.test("Dockerfile build stage copies every script scripts/build.sh runs", () => {
  const [build] = stages(parseDockerfile());
  const copied = argsOf(build, "COPY").flatMap((c) => c.split(/\s+/).slice(0, -1));
  const used = [...readRepoFile("scripts/build.sh").matchAll(/scripts\/[\w.-]+\.(?:ts|sh)/g)]
    .map((m) => m[0]);
  assert.ok(used.includes("scripts/eager_functions.ts"));
  for (const script of used) assert.ok(copied.includes(script), `${script} is not copied`);
});

Deno.test("Dockerfile ships both binaries in the directory of the DaemonSet's command", () => {
  const df = parseDockerfile();
  const final = stages(df).at(-1)!;
  const command = agentPod().container.command?.[0] ?? "";
  const entrypoint = JSON.parse(argsOf(final, "ENTRYPOINT")[0]);
  assert.deepEqual(entrypoint, [command], "ENTRYPOINT is the DaemonSet's command");
  // The agent installs the plugin it finds next to its own executable.
  const copy = argsOf(final, "COPY").find((c) => c.includes("bin/mycni-init"));
  assert.ok(copy, "the final stage copies bin/mycni-init");
  const words = copy.split(/\s+/);
  assert.ok(words.includes("/src/bin/mycni"), "bin/mycni is copied beside it");
  assert.equal(posix.normalize(words.at(-1)! + "/"), posix.dirname(command) + "/");
});

Deno.test("Dockerfile run stage installs every program the agent runs, iptables on nft, no iproute2", () => {
  const final = stages(parseDockerfile()).at(-1)!;
  const run = argsOf(final, "RUN").join("\n");
  // The Debian package of each program the agent's start-up check looks for.
  const PACKAGE: Record<string, string> = { nft: "nftables" };
  for (const tool of AGENT_TOOLS) {
    const pkg = PACKAGE[tool.name] ?? (/^ip6?tables/.test(tool.name) ? "iptables" : undefined);
    assert.ok(pkg, `no Debian package known for ${tool.name}`);
    assert.match(run, new RegExp(`apt-get install[^&]*\\b${pkg}\\b`), `${tool.name}: ${pkg}`);
  }
  // The agent speaks rtnetlink itself (lib/net): nothing in the image runs `ip`.
  assert.doesNotMatch(run, /\biproute2\b/);
  assert.match(run, /update-alternatives --set iptables \/usr\/sbin\/iptables-nft/);
  assert.match(run, /update-alternatives --set ip6tables \/usr\/sbin\/ip6tables-nft/);
});

Deno.test(".dockerignore keeps what the build stage copies", () => {
  const ignored = readRepoFile(".dockerignore").split("\n").map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const [build] = stages(parseDockerfile());
  for (const copy of argsOf(build, "COPY")) {
    for (const source of copy.split(/\s+/).slice(0, -1)) {
      const top = source.split("/")[0];
      assert.ok(!ignored.includes(top), `${source} is copied but .dockerignore drops ${top}`);
    }
  }
});
