// The few assertions the tests use, on node:assert (jsr:@std/assert is out of reach here).
import nodeAssert from "node:assert";

/** Fails with `msg` unless `cond` is truthy. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Deep, strict equality. */
export function assertEquals<T>(actual: unknown, expected: T, msg?: string): asserts actual is T {
  if (msg === undefined) nodeAssert.deepStrictEqual(actual, expected);
  else nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, msg?: string): void {
  if (msg === undefined) nodeAssert.match(text, re);
  else nodeAssert.match(text, re, msg);
}

/** `fn` rejects; returns the error for further checks. */
export async function assertRejects(fn: () => Promise<unknown>, msg?: string): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    return err as Error;
  }
  throw new nodeAssert.AssertionError({ message: msg ?? "expected a rejection" });
}

/** `fn` throws; returns the error for further checks. */
export function assertThrows(fn: () => unknown, msg?: string): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new nodeAssert.AssertionError({ message: msg ?? "expected a throw" });
}
