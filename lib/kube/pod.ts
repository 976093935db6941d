// PLACEHOLDER until the policy branch lands.
import type { PodInfo } from "./policy_objects.ts";

/** Placeholder. */
export function parsePod(
  _obj: unknown,
): { ok: true; pod: PodInfo } | { ok: false; key: string; reason: string } {
  return { ok: false, key: "?", reason: "not implemented" };
}
