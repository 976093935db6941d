import { delay, sleep } from "../../../lib/time/sleep.ts";
import { assert } from "../../harness/assert.ts";

Deno.test("delay() resolves after at least the asked time", async () => {
  for (const ms of [1, 15, 40]) {
    const t = performance.now();
    await delay(ms);
    const took = performance.now() - t;
    // Timers may fire up to a millisecond early by the clock performance.now() reads.
    assert(took >= ms - 1 && took < ms + 500, `delay(${ms}) took ${took.toFixed(1)} ms`);
  }
});

Deno.test("sleep() resolves after the time, or at once when its signal aborts", async () => {
  const t = performance.now();
  await sleep(20, new AbortController().signal);
  assert(performance.now() - t >= 19, "sleep(20) returned early");
  const stop = new AbortController();
  const started = performance.now();
  const slept = sleep(10_000, stop.signal);
  stop.abort();
  await slept;
  assert(performance.now() - started < 1000, "sleep() did not stop on abort");
});
