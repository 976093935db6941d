// Label selector matching (lib/policy/selector.ts): every operator, absent keys, empty selectors.
import {
  type LabelRequirement,
  type LabelSelector,
  SELECT_ALL,
} from "../../../lib/kube/policy_objects.ts";
import {
  isEmptySelector,
  requirementMatches,
  selectorKey,
  selectorMatches,
} from "../../../lib/policy/selector.ts";
import { assertEquals } from "../../harness/assert.ts";

const req = (
  key: string,
  operator: LabelRequirement["operator"],
  values: string[] = [],
): LabelRequirement => ({ key, operator, values });
const sel = (
  matchLabels: Record<string, string>,
  ...matchExpressions: LabelRequirement[]
): LabelSelector => ({ matchLabels, matchExpressions });

const web = { app: "web", tier: "frontend" };
const db = { app: "db", tier: "backend" };
const bare = {};

Deno.test("requirementMatches() In needs the key with one of the values", () => {
  const r = req("tier", "In", ["frontend", "edge"]);
  assertEquals([web, db, bare].map((l) => requirementMatches(r, l)), [true, false, false]);
});

Deno.test("requirementMatches() NotIn holds for other values and for an absent key", () => {
  const r = req("tier", "NotIn", ["backend"]);
  assertEquals([web, db, bare].map((l) => requirementMatches(r, l)), [true, false, true]);
});

Deno.test("requirementMatches() Exists needs the key, whatever its value (even empty)", () => {
  const r = req("tier", "Exists");
  assertEquals([web, db, bare, { tier: "" }].map((l) => requirementMatches(r, l)), [
    true,
    true,
    false,
    true,
  ]);
});

Deno.test("requirementMatches() DoesNotExist holds only when the key is absent", () => {
  const r = req("tier", "DoesNotExist");
  assertEquals([web, db, bare].map((l) => requirementMatches(r, l)), [false, false, true]);
});

Deno.test("requirementMatches() reads own labels only, never Object.prototype", () => {
  assertEquals(requirementMatches(req("constructor", "Exists"), {}), false);
  assertEquals(requirementMatches(req("toString", "DoesNotExist"), {}), true);
  assertEquals(selectorMatches(sel({ constructor: "x" }), {}), false);
});

Deno.test("selectorMatches() ANDs matchLabels and every expression", () => {
  const s = sel({ app: "web" }, req("tier", "In", ["frontend"]), req("env", "DoesNotExist"));
  assertEquals(selectorMatches(s, web), true);
  assertEquals(selectorMatches(s, { ...web, env: "prod" }), false);
  assertEquals(selectorMatches(s, { ...web, tier: "edge" }), false);
  assertEquals(selectorMatches(s, db), false);
});

Deno.test("selectorMatches() matchLabels needs the exact value and the key present", () => {
  assertEquals(selectorMatches(sel({ app: "web" }), web), true);
  assertEquals(selectorMatches(sel({ app: "web" }), { app: "webs" }), false);
  assertEquals(selectorMatches(sel({ app: "" }), bare), false);
  assertEquals(selectorMatches(sel({ app: "" }), { app: "" }), true);
});

Deno.test("selectorMatches() an empty selector matches every label set, the empty one too", () => {
  assertEquals([web, db, bare].map((l) => selectorMatches(SELECT_ALL, l)), [true, true, true]);
  assertEquals(isEmptySelector(SELECT_ALL), true);
  assertEquals(isEmptySelector(sel({}, req("a", "Exists"))), false);
  assertEquals(isEmptySelector(sel({ a: "1" })), false);
});

Deno.test("selectorKey() is the same for the same selection written in another order", () => {
  const a = sel({ b: "2", a: "1" }, req("x", "In", ["q", "p"]), req("y", "Exists"));
  const b = sel({ a: "1", b: "2" }, req("y", "Exists"), req("x", "In", ["p", "q", "p"]));
  assertEquals(selectorKey(a), selectorKey(b));
  assertEquals(selectorKey(a) === selectorKey(sel({ a: "1", b: "2" })), false);
  assertEquals(
    selectorKey(sel({}, req("x", "In", ["p"]))) === selectorKey(sel({}, req("x", "NotIn", ["p"]))),
    false,
  );
});
