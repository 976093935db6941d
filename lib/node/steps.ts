// Reconcile and uninstall run a list of independent steps: one failing must not stop the rest
// (a broken iptables must not keep routes from being fixed), and each failure is logged once.
import type { Logger } from "../log/logger.ts";

/** Runs named steps, logging failures instead of stopping; `ok` says whether all succeeded. */
export interface StepRunner {
  step(what: string, fn: () => void | Promise<void>): Promise<void>;
  readonly ok: boolean;
}

/**
 * A step runner that logs "cannot <what>" with the error and tells `onError` too.
 *
 * @example
 * const steps = stepRunner(log);
 * await steps.step("remove routes", () => void flushOwnedRoutes());
 * return steps.ok ? 0 : 1;
 */
export function stepRunner(log: Logger, onError: (message: string) => void = () => {}): StepRunner {
  let ok = true;
  return {
    async step(what, fn) {
      try {
        await fn();
      } catch (err) {
        ok = false;
        const error = (err as Error).message;
        onError(`Cannot ${what}: ${error}`);
        log.error(`cannot ${what}`, { error });
      }
    },
    get ok() {
      return ok;
    },
  };
}
