// Long-running child processes for the test harness (agents, the fake API server, probes):
// lib/process/run.ts runs commands to completion, these stay up until stopped or disposed.

/** Options for {@linkcode spawnChild}. */
export interface ChildOptions {
  /** Append the child's stderr (and stdout unless `pipeStdio`) to this file. */
  readonly logFile?: string;
  /** Keep stdin and stdout as pipes for the caller (a probe's request/reply lines). */
  readonly pipeStdio?: boolean;
  /** Extra environment (added to the inherited one). */
  readonly env?: Readonly<Record<string, string>>;
}

/** A running child process that stops itself on `await using`. */
export interface Child extends AsyncDisposable {
  readonly argv: readonly string[];
  readonly pid: number;
  /** Resolves when the process has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  /** The process's stdin/stdout when `pipeStdio` was set. */
  readonly process: Deno.ChildProcess;
  /** Whether the process has exited. */
  exited(): boolean;
  /** Sends `signal` and waits for the exit; SIGKILL after `graceMs` if still running. */
  stop(signal?: Deno.Signal, graceMs?: number): Promise<Deno.CommandStatus>;
}

/**
 * Starts `argv` in the background; stdout/stderr go to `logFile` (or are dropped).
 *
 * @example
 * await using agent = await spawnChild(inNetns(ns, ["bin/mycni-init", "--once"]), { logFile });
 */
export async function spawnChild(argv: readonly string[], opts: ChildOptions = {}): Promise<Child> {
  const [cmd, ...args] = argv;
  const log = opts.logFile === undefined
    ? undefined
    : await Deno.open(opts.logFile, { create: true, append: true });
  const toLog = log ? "piped" : "null";
  const process = new Deno.Command(cmd, {
    args,
    stdin: opts.pipeStdio ? "piped" : "null",
    stdout: opts.pipeStdio ? "piped" : toLog,
    stderr: toLog,
    env: opts.env as Record<string, string> | undefined,
  }).spawn();
  const pumps: Promise<void>[] = [];
  if (log) {
    // Straight to the file, chunk by chunk: the file's WritableStream holds everything back
    // until it is closed, and a log is read while its process still runs (a failing test's
    // agent tails).
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) {
        for (let off = 0; off < chunk.length;) off += await log.write(chunk.subarray(off));
      }
    };
    pumps.push(pump(process.stderr).catch(() => {}));
    if (!opts.pipeStdio) pumps.push(pump(process.stdout).catch(() => {}));
    Promise.all(pumps).finally(() => log.close());
  }
  let done = false;
  const status = process.status.then(async (s) => {
    done = true;
    await Promise.all(pumps);
    return s;
  });
  const stop = async (signal: Deno.Signal = "SIGTERM", graceMs = 3000) => {
    if (!done) {
      try {
        process.kill(signal);
      } catch { /* exited meanwhile */ }
      const timer = setTimeout(() => {
        try {
          process.kill("SIGKILL");
        } catch { /* exited meanwhile */ }
      }, graceMs);
      try {
        await status;
      } finally {
        clearTimeout(timer);
      }
    }
    return await status;
  };
  return {
    argv,
    pid: process.pid,
    status,
    process,
    exited: () => done,
    stop,
    async [Symbol.asyncDispose]() {
      if (opts.pipeStdio) await process.stdin.close().catch(() => {});
      await stop();
    },
  };
}
