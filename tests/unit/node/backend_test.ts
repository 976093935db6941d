// The per-peer backend choice and the datapath it derives (lib/node/backend.ts): pure, no root.
import { deepStrictEqual as assertEquals, match as assertMatch, throws } from "node:assert/strict";
import type { NodeInfo } from "../../../lib/kube/node.ts";
import {
  choiceReason,
  judgePath,
  ownVtepAddresses,
  type PathLookup,
  pathTargets,
  peerCidrs,
  planDatapath,
  podMtu,
  sameChoice,
  vtepAddress,
  vtepMac,
  vxlanOverhead,
} from "../../../lib/node/backend.ts";

const nodes: NodeInfo[] = [
  {
    name: "n1",
    ips: ["192.0.2.11", "2001:db8::11"],
    podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  },
  {
    name: "n2",
    ips: ["192.0.2.12", "2001:db8::12"],
    podCIDRs: ["10.244.2.0/24", "fd00:10:244:2::/64"],
  },
  { name: "n3", ips: ["198.51.100.13"], podCIDRs: ["10.244.3.0/24", "fd00:10:244:3::/64"] },
];

const ON_LINK: PathLookup = { onLink: true, oif: 2, detail: "on-link" };
const ROUTED: PathLookup = { onLink: false, oif: 2, detail: "via 192.0.2.254" };
const VXLAN = { dev: 9, local: "192.0.2.11", family: 4 } as const;

Deno.test("peerCidrs() lists every other node's podCIDRs with its VTEP and addresses", () => {
  const { peers, skipped } = peerCidrs(nodes, "n1");
  assertEquals(peers, [
    {
      node: "n2",
      family: 4,
      dst: "10.244.2.0/24",
      vtep: "10.244.2.0",
      addrs: { 4: "192.0.2.12", 6: "2001:db8::12" },
    },
    {
      node: "n2",
      family: 6,
      dst: "fd00:10:244:2::/64",
      vtep: "fd00:10:244:2::",
      addrs: { 4: "192.0.2.12", 6: "2001:db8::12" },
    },
    {
      node: "n3",
      family: 4,
      dst: "10.244.3.0/24",
      vtep: "10.244.3.0",
      addrs: { 4: "198.51.100.13" },
    },
    {
      node: "n3",
      family: 6,
      dst: "fd00:10:244:3::/64",
      vtep: "fd00:10:244:3::",
      addrs: { 4: "198.51.100.13" },
    },
  ]);
  assertEquals(skipped, []);
});

Deno.test("peerCidrs() skips bad, overlapping and doubly claimed podCIDRs with a reason", () => {
  const { peers, skipped } = peerCidrs([
    nodes[0],
    { name: "a", ips: ["192.0.2.20"], podCIDRs: ["10.244.1.0/25"] },
    { name: "b", ips: ["192.0.2.21", "nope"], podCIDRs: ["10.244.9.1/24", "10.244.8.0/24"] },
    { name: "c", ips: ["192.0.2.22"], podCIDRs: ["10.244.8.0/24"] },
    { name: "d", ips: [], podCIDRs: [] },
  ], "n1");
  assertEquals(peers.map((p) => `${p.node} ${p.dst}`), ["b 10.244.8.0/24"]);
  assertEquals(skipped.map((s) => s.node), ["a", "b", "b", "c", "d"]);
  assertMatch(skipped[0].reason, /overlaps this node's podCIDRs/);
  assertMatch(skipped[3].reason, /already node b's/);
});

Deno.test("peerCidrs() canonicalises addresses and CIDRs", () => {
  const { peers } = peerCidrs([
    { name: "x", ips: ["2001:DB8:0:0::12"], podCIDRs: ["FD00:10:244:0002::/64"] },
  ], "n1");
  assertEquals(peers, [{
    node: "x",
    family: 6,
    dst: "fd00:10:244:2::/64",
    vtep: "fd00:10:244:2::",
    addrs: { 6: "2001:db8::12" },
  }]);
});

Deno.test("vtepMac() embeds an IPv4 address and digests an IPv6 one, locally administered", () => {
  assertEquals(vtepMac("192.0.2.12"), "0e:4d:c0:00:02:0c");
  assertEquals(vtepMac("198.51.100.13"), "0e:4d:c6:33:64:0d");
  const v6 = vtepMac("fd00:192:0:2::12");
  assertMatch(v6, /^1e(:[0-9a-f]{2}){5}$/);
  // Every node must compute the same MAC for a peer, whatever spelling its address came in.
  assertEquals(vtepMac("FD00:192:0:2:0:0:0:12"), v6);
  const first = parseInt(v6.slice(0, 2), 16);
  assertEquals([first & 1, first & 2], [0, 2], "unicast, locally administered");
  throws(() => vtepMac("not-an-ip"), /Cannot derive a VTEP MAC from "not-an-ip"/);
});

Deno.test("vtepMac() gives 4096 IPv6 nodes on two segments 4096 distinct MACs", () => {
  const macs = new Set<string>();
  for (let i = 0; i < 2048; i++) {
    macs.add(vtepMac(`fd00:192:0:2::${i.toString(16)}`));
    macs.add(vtepMac(`fd00:198:51:100::${i.toString(16)}`));
  }
  assertEquals(macs.size, 4096);
});

Deno.test("vtepAddress() is the podCIDR's network address; ownVtepAddresses() host prefixes", () => {
  assertEquals(vtepAddress("10.244.2.0/24"), "10.244.2.0");
  assertEquals(vtepAddress("fd00:10:244:2::/64"), "fd00:10:244:2::");
  assertEquals(ownVtepAddresses(["10.244.1.0/24", "fd00:10:244:1::/64", "bad"]), [
    "10.244.1.0/32",
    "fd00:10:244:1::/128",
  ]);
});

Deno.test("podMtu() takes 50 (IPv4 underlay) or 70 (IPv6) off unless every peer is host-gw", () => {
  assertEquals([vxlanOverhead(4), vxlanOverhead(6)], [50, 70]);
  assertEquals(podMtu("auto", 1500, 4), 1450);
  assertEquals(podMtu("vxlan", 1500, 6), 1430);
  assertEquals(podMtu("host-gw", 1500, 6), 1500);
  assertEquals(podMtu("auto", 9000, 4), 8950);
});

Deno.test("judgePath() calls on-link exactly one plain unicast route without a gateway", () => {
  const one = { routes: 1, type: 1, oif: 2, multipath: false };
  assertEquals(judgePath(one), { onLink: true, oif: 2, detail: "on-link" });
  assertEquals(judgePath({ ...one, via: "192.0.2.254" }), {
    onLink: false,
    oif: 2,
    detail: "via 192.0.2.254",
  });
  assertEquals(judgePath({ ...one, routes: 2 }).onLink, false);
  assertEquals(judgePath({ ...one, multipath: true }).detail, "a multipath route");
  assertEquals(judgePath({ ...one, type: 2 }).detail, "a local address of this node");
  // A blackhole or unreachable route has no gateway either, and is no way to the peer.
  assertEquals(judgePath({ ...one, type: 6 }), { onLink: false, detail: "a route of type 6" });
  assertEquals(judgePath("Network is unreachable"), {
    onLink: false,
    detail: "no route (Network is unreachable)",
  });
});

Deno.test("pathTargets() asks about each peer's gateway address once, and nothing for vxlan", () => {
  const { peers } = peerCidrs(nodes, "n1");
  assertEquals(pathTargets("auto", peers), ["192.0.2.12", "2001:db8::12", "198.51.100.13"]);
  assertEquals(pathTargets("host-gw", peers), pathTargets("auto", peers));
  assertEquals(pathTargets("vxlan", peers), []);
});

Deno.test("planDatapath() auto: host-gw to on-link peers, VXLAN to the rest, v6 over a v4 underlay", () => {
  const { peers } = peerCidrs(nodes, "n1");
  const paths = new Map([["192.0.2.12", ON_LINK], ["2001:db8::12", ON_LINK], [
    "198.51.100.13",
    ROUTED,
  ]]);
  const plan = planDatapath({ mode: "auto", peers, paths, vxlan: VXLAN });
  assertEquals(plan.routes, [
    {
      family: 4,
      dst: "10.244.2.0/24",
      via: "192.0.2.12",
      oif: 2,
      onlink: false,
      node: "n2",
      backend: "host-gw",
    },
    {
      family: 6,
      dst: "fd00:10:244:2::/64",
      via: "2001:db8::12",
      oif: 2,
      onlink: false,
      node: "n2",
      backend: "host-gw",
    },
    {
      family: 4,
      dst: "10.244.3.0/24",
      via: "10.244.3.0",
      oif: 9,
      onlink: true,
      node: "n3",
      backend: "vxlan",
    },
    // n3 has no IPv6 address: its v6 pods are still reachable, over the IPv4 underlay.
    {
      family: 6,
      dst: "fd00:10:244:3::/64",
      via: "fd00:10:244:3::",
      oif: 9,
      onlink: true,
      node: "n3",
      backend: "vxlan",
    },
  ]);
  const mac = "0e:4d:c6:33:64:0d";
  assertEquals(plan.neighbours, [
    { family: 4, ip: "10.244.3.0", mac, node: "n3" },
    { family: 6, ip: "fd00:10:244:3::", mac, node: "n3" },
  ]);
  assertEquals(plan.fdb, [{ mac, dst: "198.51.100.13", node: "n3" }]);
  assertEquals(plan.choices.map((c) => [c.dst, c.backend, choiceReason(c)]), [
    ["10.244.2.0/24", "host-gw", "192.0.2.12 is on-link"],
    ["fd00:10:244:2::/64", "host-gw", "2001:db8::12 is on-link"],
    ["10.244.3.0/24", "vxlan", "198.51.100.13 is not on-link: via 192.0.2.254"],
    ["fd00:10:244:3::/64", "vxlan", "no IPv6 address"],
  ]);
});

Deno.test("planDatapath() host-gw: a peer that is not on-link gets nothing, and says why", () => {
  const { peers } = peerCidrs(nodes.slice(0, 3), "n1");
  const paths = new Map([["192.0.2.12", ON_LINK], ["2001:db8::12", ON_LINK], [
    "198.51.100.13",
    ROUTED,
  ]]);
  const plan = planDatapath({ mode: "host-gw", peers, paths });
  assertEquals(plan.routes.map((r) => r.dst), ["10.244.2.0/24", "fd00:10:244:2::/64"]);
  assertEquals([plan.neighbours, plan.fdb], [[], []]);
  const failed = plan.choices.filter((c) => c.backend === undefined);
  assertEquals(failed.map((c) => [c.node, c.dst, choiceReason(c)]), [
    [
      "n3",
      "10.244.3.0/24",
      "--backend host-gw cannot reach it: 198.51.100.13 is not on-link: via 192.0.2.254",
    ],
    ["n3", "fd00:10:244:3::/64", "--backend host-gw cannot reach it: no IPv6 address"],
  ]);
});

Deno.test("planDatapath() vxlan: every peer through the tunnel, on-link or not", () => {
  const { peers } = peerCidrs(nodes, "n1");
  const plan = planDatapath({ mode: "vxlan", peers, paths: new Map(), vxlan: VXLAN });
  assertEquals(plan.routes.map((r) => [r.dst, r.via, r.backend]), [
    ["10.244.2.0/24", "10.244.2.0", "vxlan"],
    ["fd00:10:244:2::/64", "fd00:10:244:2::", "vxlan"],
    ["10.244.3.0/24", "10.244.3.0", "vxlan"],
    ["fd00:10:244:3::/64", "fd00:10:244:3::", "vxlan"],
  ]);
  assertEquals(plan.fdb, [
    { mac: "0e:4d:c0:00:02:0c", dst: "192.0.2.12", node: "n2" },
    { mac: "0e:4d:c6:33:64:0d", dst: "198.51.100.13", node: "n3" },
  ]);
  assertEquals(plan.neighbours.length, 4);
});

Deno.test("planDatapath() configures nothing it cannot finish, and says why", () => {
  const { peers } = peerCidrs([
    nodes[0],
    // Only an IPv6 address, but the underlay (this node's address) is IPv4.
    { name: "v6only", ips: ["2001:db8:9::1"], podCIDRs: ["10.244.7.0/24"] },
    // Claims this node's own underlay address: its VTEP MAC would be ours.
    { name: "twin", ips: ["192.0.2.11"], podCIDRs: ["10.244.8.0/24"] },
  ], "n1");
  const paths = new Map([["192.0.2.11", judgePath({ routes: 1, type: 2, multipath: false })]]);
  const plan = planDatapath({ mode: "auto", peers, paths, vxlan: VXLAN });
  assertEquals([plan.routes, plan.neighbours, plan.fdb], [[], [], []]);
  assertEquals(plan.choices.map((c) => [c.node, choiceReason(c)]), [
    [
      "twin",
      "192.0.2.11 is not on-link: a local address of this node, and its VTEP MAC " +
      "0e:4d:c0:00:02:0b is also this node's",
    ],
    ["v6only", "no IPv4 address (for host-gw or the VXLAN underlay)"],
  ]);
  const down = planDatapath({
    mode: "auto",
    peers: peerCidrs(nodes, "n1").peers.slice(2),
    paths: new Map([["198.51.100.13", ROUTED]]),
    vxlan: { unavailable: "vxlan: Operation not supported" },
  });
  assertEquals(down.routes, []);
  assertMatch(
    choiceReason(down.choices[0]),
    /VXLAN is unavailable: vxlan: Operation not supported$/,
  );
});

Deno.test("sameChoice() compares the parts as they are: shared lookups, same words", () => {
  const { peers } = peerCidrs(nodes, "n1");
  const paths = new Map([["192.0.2.12", ON_LINK], ["2001:db8::12", ON_LINK], [
    "198.51.100.13",
    ROUTED,
  ]]);
  const a = planDatapath({ mode: "auto", peers, paths, vxlan: VXLAN }).choices;
  const b = planDatapath({ mode: "auto", peers, paths, vxlan: VXLAN }).choices;
  assertEquals(a.map((c, i) => sameChoice(c, b[i])), [true, true, true, true]);
  const moved = new Map(paths).set("198.51.100.13", ON_LINK);
  const c = planDatapath({ mode: "auto", peers, paths: moved, vxlan: VXLAN }).choices;
  assertEquals(a.map((x, i) => sameChoice(x, c[i])), [true, true, false, true]);
  const hostGw = planDatapath({ mode: "host-gw", peers, paths }).choices;
  assertEquals(sameChoice(hostGw[2], a[2]), false);
  assertEquals(choiceReason(hostGw[3]), "--backend host-gw cannot reach it: no IPv6 address");
});
