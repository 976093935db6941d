// PLACEHOLDER until the policy branch lands.
import type { PolicyState } from "./compile.ts";
import type { Explanation, FlowQuery } from "./plan.ts";

/** Placeholder. */
export function explainFlow(_state: PolicyState, _q: FlowQuery): Explanation {
  throw new Error("not implemented yet");
}
