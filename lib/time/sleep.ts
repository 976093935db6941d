// Waiting that stops early when the agent shuts down.

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
