// v1.Namespace JSON -> the NamespaceInfo policy reads: its name and labels.
import { objectAt, optionalStringAt, stringMapAt } from "./fields.ts";
import type { NamespaceInfo } from "./policy_objects.ts";

/** A namespace policy can use, or why not (`key` is its name, "?" when it has none). */
export type ParsedNamespace =
  | { readonly ok: true; readonly namespace: NamespaceInfo }
  | { readonly ok: false; readonly key: string; readonly reason: string };

/**
 * Reads `metadata.name` and `metadata.labels`.
 *
 * @example
 * parseNamespace({ metadata: { name: "x", labels: { "kubernetes.io/metadata.name": "x" } } });
 * // { ok: true, namespace: { name: "x", labels: { "kubernetes.io/metadata.name": "x" } } }
 */
export function parseNamespace(obj: unknown): ParsedNamespace {
  let name = "";
  try {
    const metadata = objectAt(objectAt(obj, "namespace").metadata, "metadata");
    name = optionalStringAt(metadata.name, "metadata.name", "");
    if (name === "") {
      return { ok: false, key: "?", reason: "namespace object has no metadata.name" };
    }
    return {
      ok: true,
      namespace: { name, labels: stringMapAt(metadata.labels, "metadata.labels") },
    };
  } catch (err) {
    return { ok: false, key: name === "" ? "?" : name, reason: (err as Error).message };
  }
}
