import { deepStrictEqual as assertEquals } from "node:assert/strict";
import type { DesiredRoute } from "../../../lib/node/desired.ts";
import { planRoutes } from "../../../lib/node/route_plan.ts";

const want = (dst: string, via: string): DesiredRoute => ({
  family: dst.includes(":") ? 6 : 4,
  dst,
  via,
  node: "n",
});

Deno.test("planRoutes() adds missing routes with our proto", () => {
  assertEquals(planRoutes([want("10.244.2.0/24", "192.0.2.12")], [], 77).map((c) => c.line), [
    "route add 10.244.2.0/24 via 192.0.2.12 proto 77",
  ]);
});

Deno.test("planRoutes() changes nothing when the kernel already matches", () => {
  const desired = [want("10.244.2.0/24", "192.0.2.12"), want("fd00:10:244:2::/64", "2001:db8::12")];
  const current = [
    { dst: "10.244.2.0/24", via: "192.0.2.12" },
    { dst: "fd00:10:244:2::/64", via: "2001:db8::12" },
  ];
  assertEquals(planRoutes(desired, current, 77), []);
});

Deno.test("planRoutes() replaces a route whose node moved to another address", () => {
  const changes = planRoutes([want("10.244.2.0/24", "192.0.2.22")], [{
    dst: "10.244.2.0/24",
    via: "192.0.2.12",
  }], 77);
  assertEquals(changes.map((c) => c.line), ["route replace 10.244.2.0/24 via 192.0.2.22 proto 77"]);
});

Deno.test("planRoutes() removes a departed node's route", () => {
  const changes = planRoutes([], [{ dst: "10.244.3.0/24", via: "192.0.2.13" }], 77);
  assertEquals(changes, [{
    op: "delete",
    dst: "10.244.3.0/24",
    via: "192.0.2.13",
    line: "route del 10.244.3.0/24 via 192.0.2.13 proto 77",
  }]);
});

Deno.test("planRoutes() reads ip's host routes without a prefix and deletes duplicates", () => {
  const changes = planRoutes([want("10.9.9.9/32", "192.0.2.1")], [
    { dst: "10.9.9.9", via: "192.0.2.1" },
    { dst: "10.9.9.9", via: "192.0.2.2" },
  ], 77);
  assertEquals(changes.map((c) => c.op), ["delete", "replace"]);
});
