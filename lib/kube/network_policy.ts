// PLACEHOLDER until the policy branch lands.
import type { PolicyEntry } from "./policy_objects.ts";

/** Placeholder. */
export function parseNetworkPolicy(
  _obj: unknown,
): { ok: true; entry: PolicyEntry } | { ok: false; key: string; reason: string } {
  return { ok: false, key: "?", reason: "not implemented" };
}
