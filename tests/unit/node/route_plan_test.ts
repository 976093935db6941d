// The pure diffs of the agent's datapath (lib/node/route_plan.ts): routes under our proto, and
// the neighbour and FDB entries on the VXLAN device.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import type { PeerRoute } from "../../../lib/node/backend.ts";
import type { OwnedRoute } from "../../../lib/net/route.ts";
import { planFdb, planNeighbours, planRoutes } from "../../../lib/node/route_plan.ts";

const hostGw = (dst: string, via: string, oif = 2): PeerRoute => ({
  family: dst.includes(":") ? 6 : 4,
  dst,
  via,
  oif,
  onlink: false,
  node: "n",
  backend: "host-gw",
});
const vxlan = (dst: string, via: string): PeerRoute => ({
  family: dst.includes(":") ? 6 : 4,
  dst,
  via,
  oif: 9,
  onlink: true,
  node: "n",
  backend: "vxlan",
});
/** What the kernel lists for a route the agent made from `r`. */
const kernel = (r: PeerRoute, change: Partial<OwnedRoute> = {}): OwnedRoute => ({
  family: r.family,
  dst: r.dst,
  table: 254,
  protocol: 77,
  type: 1,
  via: r.via,
  oif: r.oif,
  onlink: r.onlink,
  multipath: false,
  ...change,
});
const ops = (changes: ReturnType<typeof planRoutes>) =>
  changes.map((c) => `${c.op} ${c.route.dst} via ${c.route.via}`);

Deno.test("planRoutes() adds missing routes", () => {
  const want = hostGw("10.244.2.0/24", "192.0.2.12");
  assertEquals(planRoutes([want], []), [{ op: "add", route: want }]);
});

Deno.test("planRoutes() changes nothing when the kernel already matches, both backends", () => {
  const desired = [
    hostGw("10.244.2.0/24", "192.0.2.12"),
    hostGw("fd00:10:244:2::/64", "2001:db8::12"),
    vxlan("10.244.3.0/24", "10.244.3.0"),
    vxlan("fd00:10:244:3::/64", "fd00:10:244:3::"),
  ];
  assertEquals(planRoutes(desired, desired.map((r) => kernel(r))), []);
});

Deno.test("planRoutes() replaces a route whose node moved, or switched backend either way", () => {
  const moved = hostGw("10.244.2.0/24", "192.0.2.22");
  assertEquals(ops(planRoutes([moved], [kernel(hostGw("10.244.2.0/24", "192.0.2.12"))])), [
    "replace 10.244.2.0/24 via 192.0.2.22",
  ]);
  const toVxlan = vxlan("10.244.2.0/24", "10.244.2.0");
  assertEquals(ops(planRoutes([toVxlan], [kernel(moved)])), [
    "replace 10.244.2.0/24 via 10.244.2.0",
  ]);
  assertEquals(ops(planRoutes([moved], [kernel(toVxlan)])), [
    "replace 10.244.2.0/24 via 192.0.2.22",
  ]);
  // IPv6 refuses to replace a route with an onlink one through another device while the old
  // route covers the new gateway: delete, then add.
  const v6 = hostGw("fd00:10:244:2::/64", "fd00:192:0:2::12");
  const v6Vxlan = vxlan("fd00:10:244:2::/64", "fd00:10:244:2::");
  assertEquals(ops(planRoutes([v6Vxlan], [kernel(v6)])), [
    "delete fd00:10:244:2::/64 via fd00:192:0:2::12",
    "add fd00:10:244:2::/64 via fd00:10:244:2::",
  ]);
  assertEquals(ops(planRoutes([v6], [kernel(v6Vxlan)])), [
    "replace fd00:10:244:2::/64 via fd00:192:0:2::12",
  ]);
  // Same gateway, other device (the underlay moved to another link), or onlink lost.
  assertEquals(ops(planRoutes([moved], [kernel(moved, { oif: 5 })])).length, 1);
  assertEquals(ops(planRoutes([toVxlan], [kernel(toVxlan, { onlink: false })])).length, 1);
});

Deno.test("planRoutes() removes a departed node's route and duplicates down to one", () => {
  const gone = kernel(hostGw("10.244.3.0/24", "192.0.2.13"));
  assertEquals(planRoutes([], [gone]), [{ op: "delete", route: gone }]);
  const want = hostGw("10.9.9.9/32", "192.0.2.1");
  const changes = planRoutes([want], [
    kernel(hostGw("10.9.9.9/32", "192.0.2.2")),
    kernel(want),
  ]);
  assertEquals(ops(changes), ["delete 10.9.9.9/32 via 192.0.2.2"]);
});

Deno.test("planNeighbours() writes missing, stale and kernel-made entries; deletes ours only", () => {
  const mac = "0e:4d:c6:33:64:0d";
  const want = [
    { family: 4 as const, ip: "10.244.3.0", mac, node: "n3" },
    { family: 6 as const, ip: "fd00:10:244:3::", mac, node: "n3" },
    { family: 4 as const, ip: "10.244.4.0", mac: "0e:4d:c6:33:64:0e", node: "n4" },
  ];
  const changes = planNeighbours(want, [
    { family: 4, ip: "10.244.3.0", mac, permanent: true },
    { family: 6, ip: "fd00:10:244:3::", mac: "", permanent: false },
    { family: 4, ip: "10.244.4.0", mac, permanent: true },
    { family: 4, ip: "10.244.5.0", mac, permanent: true },
    { family: 6, ip: "ff02::2", mac: "33:33:00:00:00:02", permanent: false },
  ]);
  assertEquals(changes.map((c) => `${c.op} ${c.entry.ip}`), [
    "set fd00:10:244:3::",
    "set 10.244.4.0",
    "delete 10.244.5.0",
  ]);
});

Deno.test("planFdb() writes missing or moved MACs and deletes permanent entries nobody wants", () => {
  const want = [
    { mac: "0e:4d:c6:33:64:0d", dst: "198.51.100.13", node: "n3" },
    { mac: "0e:4d:c6:33:64:0e", dst: "198.51.100.14", node: "n4" },
  ];
  const changes = planFdb(want, [
    { mac: "0e:4d:c6:33:64:0d", dst: "198.51.100.13", permanent: true },
    { mac: "0e:4d:c6:33:64:0e", dst: "192.0.2.14", permanent: true },
    { mac: "0e:4d:c0:00:02:0c", dst: "192.0.2.12", permanent: true },
  ]);
  assertEquals(changes.map((c) => `${c.op} ${c.entry.mac} ${c.entry.dst}`), [
    "set 0e:4d:c6:33:64:0e 198.51.100.14",
    "delete 0e:4d:c6:33:64:0e 192.0.2.14",
    "delete 0e:4d:c0:00:02:0c 192.0.2.12",
  ]);
  assertEquals(planFdb(want, want.map((w) => ({ ...w, permanent: true }))), []);
});
