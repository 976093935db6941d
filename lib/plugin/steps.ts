// Per-step timings for the log line: where an ADD or DEL spent its time, for operators
// chasing a slow pod start and for us keeping the plugin near the floor.

/** Returns `lap(name)`, which records the milliseconds since the previous lap into `log.stepsMs`. */
export function stepTimer(log: Record<string, unknown>): (name: string) => void {
  const steps: Record<string, number> = {};
  log.stepsMs = steps;
  let t = performance.now();
  return (name) => {
    const now = performance.now();
    steps[name] = Math.round((now - t) * 10) / 10;
    t = now;
  };
}
