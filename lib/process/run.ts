// The only place that spawns processes: an argument array in, stdout out, and an error that
// names the command, its exit code and what it said on stderr when it fails.

/** Options for {@linkcode run}. */
export interface RunOptions {
  /** Text fed to the command's stdin (`nft -f -`, `iptables-restore`). */
  readonly stdin?: string;
  /** Exit codes besides 0 that are not a failure. */
  readonly okCodes?: readonly number[];
  /** Extra environment for the child. */
  readonly env?: Readonly<Record<string, string>>;
  /** The child gets only `env`, nothing inherited (how a runtime execs a CNI plugin). */
  readonly clearEnv?: boolean;
  /** Kill the child (SIGKILL) after this long; it then reports exit code 137. */
  readonly timeoutMs?: number;
}

/** What a finished command printed and how it exited. */
export interface RunOutput {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A command that exited with a code it was not allowed to. */
export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly code: number,
    readonly stderr: string,
  ) {
    const said = stderr.trim().split("\n").slice(-3).join("; ") || "no stderr";
    super(`${argv.join(" ")} exited ${code}: ${said}`);
    this.name = "CommandError";
  }
}

/**
 * Runs `argv` and returns its stdout; throws {@linkcode CommandError} on a bad exit code.
 *
 * @example
 * const links = JSON.parse(await run(["ip", "-j", "link", "show"]));
 */
export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const out = await runOutput(argv, opts);
  if (out.code !== 0 && !(opts.okCodes ?? []).includes(out.code)) {
    throw new CommandError(argv, out.code, out.stderr);
  }
  return out.stdout;
}

/** Runs `argv` and returns its output whatever the exit code. */
export async function runOutput(
  argv: readonly string[],
  opts: RunOptions = {},
): Promise<RunOutput> {
  const [cmd, ...args] = argv;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      env: opts.env as Record<string, string> | undefined,
      clearEnv: opts.clearEnv,
    }).spawn();
  } catch (err) {
    throw new CommandError(argv, 127, `cannot start ${cmd}: ${(err as Error).message}`);
  }
  // Feed stdin while collecting output: a child that prints more than a pipe buffer before it
  // has read all of its input would otherwise deadlock against us.
  const feeding = opts.stdin === undefined ? Promise.resolve() : feed(child.stdin, opts.stdin);
  const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited meanwhile */ }
  }, opts.timeoutMs);
  const [{ code, stdout, stderr }] = await Promise.all([child.output(), feeding]).finally(() =>
    clearTimeout(timer)
  );
  const dec = new TextDecoder();
  return { code, stdout: dec.decode(stdout), stderr: dec.decode(stderr) };
}

async function feed(stdin: WritableStream<Uint8Array>, text: string): Promise<void> {
  const writer = stdin.getWriter();
  await writer.write(new TextEncoder().encode(text)).catch(() => {});
  await writer.close().catch(() => {});
}

/**
 * Prefixes `argv` so it runs inside the network namespace at `netns` (any path to a netns file).
 * nsenter rather than `ip netns exec`: the latter needs a name under /var/run/netns and
 * remounts /sys, and we must never leave anything behind in /var/run/netns.
 */
export function inNetns(netns: string, argv: readonly string[]): string[] {
  return ["nsenter", `--net=${netns}`, "--", ...argv];
}
