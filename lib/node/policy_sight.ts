// Policy over time and in sight (issue 20): what the agent runs beside the table when it
// enforces NetworkPolicy: strict mode's cuts (lib/node/strict_cut.ts) and the flow log
// (lib/node/flow_log_source.ts), both fed every policy table the kernel takes, and what they
// add to the health port (/flows, /metrics).
import type { Logger } from "../log/logger.ts";
import { createTableSync, type TableSync } from "../nft/sync.ts";
import { type FlowLogSource, startFlowLog } from "./flow_log_source.ts";
import type { HealthSources } from "./health.ts";
import type { AgentOptions } from "./options.ts";
import { createStrictCutter, type StrictCutter } from "./strict_cut.ts";
import type { AppliedPolicy } from "./table_step.ts";

/** The running pieces and how the agent connects them. */
export interface PolicySight extends AsyncDisposable {
  /** For the table step (lib/node/table_step.ts deps). */
  readonly tableDeps: {
    readonly tables: TableSync;
    readonly onPolicyApplied: (a: AppliedPolicy) => void;
  };
  /** For the health server. */
  readonly health: Pick<HealthSources, "flowLog" | "moreMetrics">;
  readonly strict?: StrictCutter;
  readonly flows?: FlowLogSource;
}

/**
 * Starts strict mode and the flow log as `opts` ask (`--policy-strict`, `--flow-log`), when
 * `policy` is enforced at all; the table sync they share reads the kernel's counters.
 *
 * @example
 * await using sight = startPolicySight(opts, status.policyEnabled, ctx.log, ctx.signal);
 * nodeSteps(opts, status.policyEnabled, ctx.log, sight.tableDeps);
 */
export function startPolicySight(
  opts: Pick<AgentOptions, "policyStrict" | "flowLog" | "flowLogRate">,
  policy: boolean,
  log: Logger,
  signal: AbortSignal,
): PolicySight {
  const tables = createTableSync();
  const strict = policy && opts.policyStrict ? createStrictCutter(log) : undefined;
  const flows = policy && opts.flowLog === "denied"
    ? startFlowLog({ rate: opts.flowLogRate, signal }, log)
    : undefined;
  return {
    tableDeps: {
      tables,
      onPolicyApplied(a) {
        flows?.applied(a);
        strict?.applied(a);
      },
    },
    health: {
      ...(flows ? { flowLog: flows.log } : {}),
      async moreMetrics() {
        let text = "";
        if (flows) text += flows.metrics(await tables.counters());
        if (strict) {
          text += "# HELP mycni_policy_strict_cut_total Established connections strict mode cut\n" +
            "# TYPE mycni_policy_strict_cut_total counter\n" +
            `mycni_policy_strict_cut_total ${strict.counters.cut}\n`;
        }
        return text;
      },
    },
    strict,
    flows,
    async [Symbol.asyncDispose]() {
      await strict?.idle();
      await flows?.[Symbol.asyncDispose]();
    },
  };
}
