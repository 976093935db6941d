// Label selector matching (metav1.LabelSelector): matchLabels AND every matchExpressions entry.
import type { LabelRequirement, LabelSelector } from "../kube/policy_objects.ts";

/**
 * Whether `labels` satisfy `selector`: every matchLabels pair is present with that value and every
 * requirement holds. NotIn and DoesNotExist hold when the key is absent (as in
 * k8s.io/apimachinery labels.Requirement.Matches); an empty selector matches everything.
 *
 * @example
 * selectorMatches(
 *   { matchLabels: { app: "web" }, matchExpressions: [{ key: "tier", operator: "NotIn", values: ["db"] }] },
 *   { app: "web" },
 * ); // true
 */
export function selectorMatches(
  selector: LabelSelector,
  labels: Readonly<Record<string, string>>,
): boolean {
  for (const key in selector.matchLabels) {
    if (!Object.hasOwn(selector.matchLabels, key)) continue;
    if (labelOf(labels, key) !== selector.matchLabels[key]) return false;
  }
  return selector.matchExpressions.every((req) => requirementMatches(req, labels));
}

/**
 * Whether one matchExpressions entry holds for `labels`.
 *
 * @example
 * requirementMatches({ key: "env", operator: "DoesNotExist", values: [] }, {}); // true
 */
export function requirementMatches(
  req: LabelRequirement,
  labels: Readonly<Record<string, string>>,
): boolean {
  const value = labelOf(labels, req.key);
  switch (req.operator) {
    case "In":
      return value !== undefined && req.values.includes(value);
    case "NotIn":
      return value === undefined || !req.values.includes(value);
    case "Exists":
      return value !== undefined;
    case "DoesNotExist":
      return value === undefined;
    default: {
      const never: never = req.operator;
      throw new Error(`Unknown selector operator ${JSON.stringify(never)}`);
    }
  }
}

/**
 * Whether the selector has no requirement at all (it selects everything).
 *
 * @example
 * isEmptySelector({ matchLabels: {}, matchExpressions: [] }); // true
 */
export function isEmptySelector(selector: LabelSelector): boolean {
  return Object.keys(selector.matchLabels).length === 0 && selector.matchExpressions.length === 0;
}

/**
 * A canonical text for the selector: equal for selectors that select the same way whatever the
 * order of their labels, expressions and values, so a compile can evaluate each one once.
 *
 * @example
 * selectorKey({ matchLabels: { b: "2", a: "1" }, matchExpressions: [] }) ===
 *   selectorKey({ matchLabels: { a: "1", b: "2" }, matchExpressions: [] }); // true
 */
export function selectorKey(selector: LabelSelector): string {
  const labels = Object.entries(selector.matchLabels).sort(([a], [b]) => (a < b ? -1 : 1));
  const exprs = selector.matchExpressions
    .map((r) => [r.key, r.operator, [...new Set(r.values)].sort()])
    .sort((a, b) => {
      const x = JSON.stringify(a), y = JSON.stringify(b);
      return x < y ? -1 : x > y ? 1 : 0;
    });
  return JSON.stringify([labels, exprs]);
}

// Own properties only: a label named "constructor" must not find Object.prototype's.
function labelOf(labels: Readonly<Record<string, string>>, key: string): string | undefined {
  return Object.hasOwn(labels, key) ? labels[key] : undefined;
}
