// PLACEHOLDER until the policy branch lands.
import type { NamespaceInfo } from "./policy_objects.ts";

/** Placeholder. */
export function parseNamespace(
  _obj: unknown,
): { ok: true; namespace: NamespaceInfo } | { ok: false; key: string; reason: string } {
  return { ok: false, key: "?", reason: "not implemented" };
}
