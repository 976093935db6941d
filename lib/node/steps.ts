// Reconcile and uninstall run a list of independent steps: one failing must not stop the rest
// (a broken iptables must not keep routes from being fixed), and each failure is logged once.
import type { Logger } from "../log/logger.ts";

/**
 * What a step did, returned for the sync to put in the agent's status (each step extends it
 * with its own findings). A step logs its own changes.
 */
export interface StepReport {
  /**
   * Why the step did not do all of its job, when it did the rest (a route the kernel refused
   * among many it took): a failure like a thrown error, with the report still counting.
   */
  readonly problem?: string;
}

/** Runs named steps, logging failures instead of stopping; `ok` says whether all succeeded. */
export interface StepRunner {
  /**
   * Runs `fn`; a throw or a report with a `problem` is a failure. Returns the report, or
   * undefined when `fn` threw.
   */
  step<R extends StepReport | void>(what: string, fn: () => R | Promise<R>): Promise<R | undefined>;
  readonly ok: boolean;
  /** Each failure as "Cannot <what>: <error>", in order. */
  readonly failures: readonly string[];
}

/**
 * A step runner that logs "cannot <what>" with the error of each failure, and tells `onFailure`
 * at once ("Cannot <what>: <error>").
 *
 * @example
 * const steps = stepRunner(log);
 * await steps.step("remove routes", () => void flushOwnedRoutes());
 * return steps.ok ? 0 : 1;
 */
export function stepRunner(
  log: Logger,
  onFailure: (message: string) => void = () => {},
): StepRunner {
  const failures: string[] = [];
  const fail = (what: string, error: string) => {
    const message = `Cannot ${what}: ${error}`;
    failures.push(message);
    log.error(`cannot ${what}`, { error });
    onFailure(message);
  };
  return {
    async step(what, fn) {
      try {
        const report = await fn();
        if (report && report.problem !== undefined) fail(what, report.problem);
        return report;
      } catch (err) {
        fail(what, (err as Error).message);
        return undefined;
      }
    },
    get ok() {
      return failures.length === 0;
    },
    failures,
  };
}
