// Waiting: for the agent, waits that stop early when it shuts down; for the plugin, a wait that
// does not pull in Deno's setTimeout.

/**
 * Resolves after `ms`, or as soon as `signal` aborts (never rejects), so loops can check the
 * signal right after and exit on SIGTERM without waiting out a backoff.
 *
 * @example
 * await sleep(1000, controller.signal);
 */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Resolves after about `ms` (at least; the first wait of a process takes a few ms more). Not
 * through setTimeout: in Deno that is the Node-compatible timer, and its first use loads some 20
 * of Deno's internal modules, ~15 ms of a plugin process; AbortSignal's timeout does not.
 *
 * @example
 * await delay(5);
 */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) =>
    AbortSignal.timeout(ms).addEventListener("abort", () => resolve(), { once: true })
  );
}
