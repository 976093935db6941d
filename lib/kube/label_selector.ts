// metav1.LabelSelector JSON -> LabelSelector, validated as the API server validates a new object
// (k8s.io/apimachinery meta/v1/validation ValidateLabelSelector: qualified-name keys, label-value
// values, In/NotIn with values, Exists/DoesNotExist without).
import { describeValue, listAt, objectAt, optionalStringAt, stringMapAt } from "./fields.ts";
import type { LabelRequirement, LabelSelector } from "./policy_objects.ts";

const OPERATORS: readonly string[] = [
  "In",
  "NotIn",
  "Exists",
  "DoesNotExist",
] satisfies LabelRequirement[
  "operator"
][];

// k8s.io/apimachinery/pkg/util/validation: IsQualifiedName, IsValidLabelValue, IsDNS1123Subdomain.
const NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Parses and validates a label selector; throws an Error naming the field (`path` and below).
 *
 * @example
 * parseLabelSelector({ matchExpressions: [{ key: "env", operator: "Exists" }] }, "spec.podSelector");
 * // { matchLabels: {}, matchExpressions: [{ key: "env", operator: "Exists", values: [] }] }
 */
export function parseLabelSelector(value: unknown, path: string): LabelSelector {
  const o = objectAt(value, path);
  const matchLabels = stringMapAt(o.matchLabels, `${path}.matchLabels`);
  for (const [k, v] of Object.entries(matchLabels)) {
    checkQualifiedName(k, `${path}.matchLabels`);
    checkLabelValue(v, `${path}.matchLabels[${JSON.stringify(k)}]`);
  }
  const matchExpressions = listAt(o.matchExpressions, `${path}.matchExpressions`).map((e, i) =>
    parseRequirement(e, `${path}.matchExpressions[${i}]`)
  );
  return { matchLabels, matchExpressions };
}

function parseRequirement(value: unknown, path: string): LabelRequirement {
  const o = objectAt(value, path);
  const key = optionalStringAt(o.key, `${path}.key`, "");
  checkQualifiedName(key, `${path}.key`);
  const operator = optionalStringAt(o.operator, `${path}.operator`, "");
  if (!OPERATORS.includes(operator)) {
    throw new Error(
      `${path}.operator: ${describeValue(operator)} is not a valid selector operator ` +
        `(want In, NotIn, Exists or DoesNotExist)`,
    );
  }
  const values = listAt(o.values, `${path}.values`).map((v, i) => {
    if (typeof v !== "string") {
      throw new Error(`${path}.values[${i}]: want a string, got ${describeValue(v)}`);
    }
    checkLabelValue(v, `${path}.values[${i}]`);
    return v;
  });
  if ((operator === "In" || operator === "NotIn") && values.length === 0) {
    throw new Error(`${path}.values: must be specified when operator is ${operator}`);
  }
  if ((operator === "Exists" || operator === "DoesNotExist") && values.length > 0) {
    throw new Error(`${path}.values: may not be specified when operator is ${operator}`);
  }
  return { key, operator: operator as LabelRequirement["operator"], values };
}

function checkQualifiedName(key: string, path: string): void {
  const parts = key.split("/");
  const name = parts[parts.length - 1];
  const prefix = parts.length === 2 ? parts[0] : undefined;
  const ok = parts.length <= 2 && name.length <= 63 && NAME.test(name) &&
    (prefix === undefined || (prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix)));
  if (!ok) {
    throw new Error(
      `${path}: ${JSON.stringify(key)} is not a valid label key (want [prefix/]name: a name of ` +
        `up to 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric; ` +
        `a DNS subdomain prefix)`,
    );
  }
}

function checkLabelValue(value: string, path: string): void {
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    throw new Error(
      `${path}: ${JSON.stringify(value)} is not a valid label value (want up to 63 ` +
        `alphanumerics, '-', '_' or '.', starting and ending alphanumeric)`,
    );
  }
}
