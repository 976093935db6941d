import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import type { NodeInfo } from "../../../lib/kube/node.ts";
import type { FdbEntry, Neighbour } from "../../../lib/net/neigh.ts";
import { NetlinkError } from "../../../lib/net/netlink.ts";
import type { OwnedRoute, RouteAnswer } from "../../../lib/net/route.ts";
import { VXLAN_DEVICE } from "../../../lib/net/vxlan.ts";
import type { BackendMode } from "../../../lib/node/backend.ts";
import { createDatapath } from "../../../lib/node/datapath.ts";
import type { DatapathKernel } from "../../../lib/node/datapath_kernel.ts";
import { fakeLog } from "./fake_log.ts";

const EEXIST = 17;
const VXLAN_INDEX = 9;

const NODES: ReadonlyMap<string, NodeInfo> = new Map([
  ["n1", { name: "n1", ips: ["192.0.2.11"], podCIDRs: ["10.244.1.0/24"] }],
  ["n2", { name: "n2", ips: ["192.0.2.12"], podCIDRs: ["10.244.2.0/24"] }],
  ["n3", { name: "n3", ips: ["198.51.100.13"], podCIDRs: ["10.244.3.0/24"] }],
]);

/** n2 is on-link on u0 (index 2); n3 and n4 are behind the router 192.0.2.1. */
const PATHS: Record<string, RouteAnswer> = {
  "192.0.2.12": { routes: 1, type: 1, oif: 2, multipath: false },
  "198.51.100.13": { routes: 1, type: 1, via: "192.0.2.1", oif: 2, multipath: false },
  "198.51.100.14": { routes: 1, type: 1, via: "192.0.2.1", oif: 2, multipath: false },
};

/** An in-memory kernel: our routes, the VXLAN device's neighbours and FDB, and every change. */
function fakeKernel() {
  const k = {
    routes: [] as OwnedRoute[],
    neighbours: [] as Neighbour[],
    fdb: [] as FdbEntry[],
    vxlan: false,
    /** Every change asked for, in order, as `<kind> <op> <key>`. */
    calls: [] as string[],
    /** Changes the kernel refuses (EEXIST). */
    refuse: new Set<string>(),
    /** A listing that fails below netlink (the socket broke). */
    broken: undefined as Error | undefined,
    resets: 0,
    kernel: undefined as unknown as DatapathKernel,
  };
  const change = (call: string) => {
    k.calls.push(call);
    if (k.refuse.has(call)) throw new NetlinkError(call, "fake", EEXIST);
  };
  const listing = <T>(items: T[]): T[] => {
    if (k.broken) throw k.broken;
    return [...items];
  };
  k.kernel = {
    underlayMtu: () => ({ mtu: 1500, dev: "u0" }),
    ensureVxlan: () => {
      const changes = k.vxlan ? [] : ["created"];
      k.vxlan = true;
      return { dev: { index: VXLAN_INDEX, name: VXLAN_DEVICE }, changes };
    },
    deleteVxlan: () => {
      const had = k.vxlan;
      k.vxlan = false;
      return had;
    },
    ensureDeviceAddresses: () => ({ added: [], removed: [] }),
    routeGetEach: (ips) => ips.map((ip) => PATHS[ip] ?? new NetlinkError("get", "fake", 101)),
    listOwnedRoutes: () => listing(k.routes),
    listNeighbours: () => listing(k.neighbours),
    listFdb: () => listing(k.fdb),
    linkNames: () => new Map([[2, "u0"]]),
    setRoute(r, { replace }) {
      change(`route ${replace ? "replace" : "add"} ${r.dst}`);
      k.routes = k.routes.filter((x) => x.dst !== r.dst);
      k.routes.push({
        family: 4,
        dst: r.dst,
        table: 254,
        protocol: 77,
        type: 1,
        via: r.via,
        ...(r.dev ? { oif: r.dev.index } : {}),
        onlink: r.onlink ?? false,
        multipath: false,
      });
    },
    deleteRoute(r) {
      change(`route delete ${r.dst}`);
      k.routes = k.routes.filter((x) => x.dst !== r.dst);
      return true;
    },
    setNeighbour(_dev, n) {
      change(`neighbour set ${n.ip}`);
      k.neighbours = [
        ...k.neighbours.filter((x) => x.ip !== n.ip),
        { family: 4, ip: n.ip, mac: n.mac, permanent: true },
      ];
    },
    deleteNeighbour(_dev, ip) {
      change(`neighbour delete ${ip}`);
      k.neighbours = k.neighbours.filter((x) => x.ip !== ip);
      return true;
    },
    setFdb(_dev, e) {
      change(`fdb set ${e.mac}`);
      k.fdb = [...k.fdb.filter((x) => x.mac !== e.mac), { ...e, permanent: true }];
    },
    deleteFdb(_dev, e) {
      change(`fdb delete ${e.mac}`);
      k.fdb = k.fdb.filter((x) => x.mac !== e.mac);
      return true;
    },
    reset() {
      k.resets++;
    },
  };
  return k;
}

function datapath(backend: BackendMode = "auto") {
  const k = fakeKernel();
  const log = fakeLog();
  const dp = createDatapath(
    { nodeName: "n1", backend, vxlanVni: 1, vxlanPort: 8472 },
    log,
    k.kernel,
  );
  return { k, log, dp };
}

Deno.test("createDatapath().run() routes host-gw where on-link, VXLAN elsewhere, and changes nothing twice", () => {
  const { k, log, dp } = datapath();
  assertEquals(dp.run(NODES), {
    changes: 4,
    routes: 2,
    hostGw: 1,
    vxlan: 1,
    unreachable: [],
  });
  // FDB and neighbour before the route that needs them.
  assertEquals(k.calls, [
    "fdb set 0e:4d:c6:33:64:0d",
    "neighbour set 10.244.3.0",
    "route add 10.244.2.0/24",
    "route add 10.244.3.0/24",
  ]);
  assertEquals(log.lines("route added").map((f) => [f.dst, f.backend, f.dev]), [
    ["10.244.2.0/24", "host-gw", "u0"],
    ["10.244.3.0/24", "vxlan", VXLAN_DEVICE],
  ]);
  const before = log.all.length;
  assertEquals(dp.run(NODES), { changes: 0, routes: 2, hostGw: 1, vxlan: 1, unreachable: [] });
  assertEquals(k.calls.length, 4);
  assertEquals(log.all.slice(before), [], "a reconcile that changed nothing logged");
});

Deno.test("createDatapath().run() makes sets first, then routes, then deletes neighbours and FDB", () => {
  const { k, dp } = datapath();
  dp.run(NODES);
  k.calls.length = 0;
  // n3 leaves and n4 (also behind the router) comes: n4's FDB and neighbour go in before its
  // route, n3's come out after its route is gone.
  const next = new Map([...NODES].filter(([n]) => n !== "n3"));
  next.set("n4", { name: "n4", ips: ["198.51.100.14"], podCIDRs: ["10.244.4.0/24"] });
  assertEquals(dp.run(next).changes, 6);
  assertEquals(k.calls, [
    "fdb set 0e:4d:c6:33:64:0e",
    "neighbour set 10.244.4.0",
    "route add 10.244.4.0/24",
    "route delete 10.244.3.0/24",
    "neighbour delete 10.244.3.0",
    "fdb delete 0e:4d:c6:33:64:0d",
  ]);
});

Deno.test("createDatapath().run() tries every change when the kernel refuses one, and says which", () => {
  const { k, log, dp } = datapath();
  k.refuse.add("route add 10.244.2.0/24");
  const report = dp.run(NODES);
  assertEquals(report.changes, 3);
  assertEquals(report.routes, 1, "the routes the kernel holds, not the plan's");
  assert(
    report.problem?.startsWith(
      "1 of 4 datapath changes failed, first: route add 10.244.2.0/24 via 192.0.2.12: ",
    ),
    report.problem,
  );
  assertEquals(log.lines("route change failed").length, 1);
  assertEquals(k.calls.at(-1), "route add 10.244.3.0/24", "the change after it was not made");
  // The next run retries only what is missing.
  k.refuse.clear();
  k.calls.length = 0;
  assertEquals(dp.run(NODES).problem, undefined);
  assertEquals(k.calls, ["route add 10.244.2.0/24"]);
});

Deno.test("createDatapath().run() reports peers no backend reaches, warning once per peer", () => {
  const { log, dp } = datapath("host-gw");
  const unreachable = [
    "node n3 podCIDR 10.244.3.0/24: --backend host-gw cannot reach it: " +
    "198.51.100.13 is not on-link: via 192.0.2.1",
  ];
  assertEquals(dp.run(NODES), { changes: 1, routes: 1, hostGw: 1, vxlan: 0, unreachable });
  assertEquals(dp.run(NODES).unreachable, unreachable);
  assertEquals(log.lines("peer unreachable").length, 1);
});

Deno.test("createDatapath().run() drops a socket that failed below netlink, not one the kernel answered", () => {
  const { k, dp } = datapath();
  k.broken = new NetlinkError("ip route show", "fake", EEXIST);
  throws(() => dp.run(NODES), NetlinkError);
  assertEquals(k.resets, 0);
  k.broken = new Error("recvmsg: Bad file descriptor");
  throws(() => dp.run(NODES), /Bad file descriptor/);
  assertEquals(k.resets, 1);
});
