// Temporary network namespaces for tests: unique names, removed on dispose even when a test fails.
import { run, runOutput } from "../../lib/process/run.ts";

/** Whether this process may create namespaces (root). CI always may; see canRunPrivileged. */
export const isRoot = Deno.uid() === 0;

/**
 * Privileged tests run when we are root. Without root they are skipped, except in CI, where a
 * skipped privileged test would be a silent pass: there the test runs and fails loudly.
 */
export const canRunPrivileged = isRoot || Deno.env.get("CI") === "true";

let counter = 0;

/** A unique, short namespace name: a prefix, this process and a counter (fits IFNAMSIZ use). */
export function uniqueName(prefix: string): string {
  return `${prefix}${Deno.pid.toString(36)}${(counter++).toString(36)}`;
}

/** A named network namespace that deletes itself on `await using`. */
export interface TempNetns extends AsyncDisposable {
  readonly name: string;
  /** /run/netns/<name>: what a runtime passes as CNI_NETNS. */
  readonly path: string;
  /** argv prefixed to run inside the namespace. */
  exec(argv: readonly string[]): string[];
}

/** Creates a namespace with lo up. */
export async function tempNetns(prefix = "mct"): Promise<TempNetns> {
  const name = uniqueName(prefix);
  await run(["ip", "netns", "add", name]);
  await run(["ip", "-n", name, "link", "set", "lo", "up"]);
  const path = `/run/netns/${name}`;
  return {
    name,
    path,
    exec: (argv) => ["nsenter", `--net=${path}`, "--", ...argv],
    async [Symbol.asyncDispose]() {
      await runOutput(["ip", "netns", "del", name]);
    },
  };
}

/** Runs `ping` from inside `netns`; resolves true when a reply came back. */
export async function ping(
  netns: TempNetns | string,
  dst: string,
  opts: { count?: number } = {},
): Promise<boolean> {
  const path = typeof netns === "string" ? netns : netns.path;
  const v6 = dst.includes(":") ? ["-6"] : [];
  const out = await runOutput([
    "nsenter",
    `--net=${path}`,
    "--",
    "ping",
    ...v6,
    "-c",
    String(opts.count ?? 1),
    "-W",
    "2",
    "-q",
    dst,
  ]);
  return out.code === 0;
}
