// Typed reads of decoded Kubernetes JSON for the policy parsers (pods, namespaces, policies): each
// read names the field's path in its error, e.g. `spec.ingress[0].from: want a list, got "x"`.
// Absent and null are the same thing in Kubernetes JSON (omitempty), so "optional" accepts both.

/**
 * The value as an object, or an error naming `path`.
 *
 * @example
 * objectAt({ a: 1 }, "spec"); // { a: 1 }
 */
export function objectAt(value: unknown, path: string): Record<string, unknown> {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    return value as Record<string, unknown>;
  }
  throw new Error(`${path}: want an object, got ${describeValue(value)}`);
}

/**
 * Like {@linkcode objectAt}, but absent or null gives undefined.
 *
 * @example
 * optionalObjectAt(null, "spec.podSelector"); // undefined
 */
export function optionalObjectAt(
  value: unknown,
  path: string,
): Record<string, unknown> | undefined {
  return value === undefined || value === null ? undefined : objectAt(value, path);
}

/**
 * The value as a list, absent or null giving undefined (Kubernetes tells an absent list from an
 * empty one in a few places, e.g. `from`), or an error naming `path`.
 *
 * @example
 * optionalListAt([1], "spec.ingress"); // [1]
 */
export function optionalListAt(value: unknown, path: string): readonly unknown[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) return value;
  throw new Error(`${path}: want a list, got ${describeValue(value)}`);
}

/**
 * The value as a list, absent or null giving [].
 *
 * @example
 * listAt(undefined, "spec.containers"); // []
 */
export function listAt(value: unknown, path: string): readonly unknown[] {
  return optionalListAt(value, path) ?? [];
}

/**
 * The value as a string, absent or null giving `fallback`, or an error naming `path`.
 *
 * @example
 * optionalStringAt(undefined, "spec.nodeName", ""); // ""
 */
export function optionalStringAt(value: unknown, path: string, fallback: string): string {
  if (value === undefined || value === null) return fallback;
  if (typeof value === "string") return value;
  throw new Error(`${path}: want a string, got ${describeValue(value)}`);
}

/**
 * A `map[string]string` (labels, matchLabels), absent or null giving {}. Keys become own
 * properties even when one is "__proto__".
 *
 * @example
 * stringMapAt({ app: "web" }, "metadata.labels"); // { app: "web" }
 */
export function stringMapAt(value: unknown, path: string): Record<string, string> {
  const o = optionalObjectAt(value, path);
  if (o === undefined) return {};
  const entries = Object.entries(o);
  for (const [k, v] of entries) {
    if (typeof v !== "string") {
      throw new Error(`${path}[${JSON.stringify(k)}]: want a string, got ${describeValue(v)}`);
    }
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/**
 * A short text of any JSON value for an error message.
 *
 * @example
 * describeValue("10.0.0.0/33"); // "\"10.0.0.0/33\""
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
