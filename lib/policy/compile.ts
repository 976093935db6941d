// PLACEHOLDER until the policy branch lands (the compiler is being written there).
import type { NamespaceInfo, PodInfo, PolicyEntry } from "../kube/policy_objects.ts";
import type { PolicyPlan } from "./plan.ts";

/** Everything policy is computed from. */
export interface PolicyState {
  readonly pods: ReadonlyMap<string, PodInfo>;
  readonly namespaces: ReadonlyMap<string, NamespaceInfo>;
  readonly policies: ReadonlyMap<string, PolicyEntry>;
  readonly nodes?: ReadonlyMap<string, readonly string[]>;
}

/** Placeholder. */
export function compilePolicies(
  _state: PolicyState,
  _opts: { node?: string; pods?: readonly string[] } = {},
): PolicyPlan {
  return { targets: [], errors: [] };
}
