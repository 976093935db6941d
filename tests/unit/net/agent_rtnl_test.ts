// The agent's rtnetlink messages (routes, VXLAN device, neighbours, FDB) byte for byte against
// what iproute2 6.1 sends for the same command (captured with `strace -e write=3`), and replies
// the kernel sent, decoded. Pure: no socket, no root.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { fdbMessage, neighbourMessage } from "../../../lib/net/neigh.ts";
import { parseRoute, routeGetMessage, routeMessage } from "../../../lib/net/route.ts";
import { parseVxlanLink, vxlanAddMessage } from "../../../lib/net/vxlan.ts";

const hex = (text: string) => Uint8Array.from(text.trim().split(/\s+/), (h) => parseInt(h, 16));
const vxlanDev = { index: 4, name: "mycni.vxlan" };

Deno.test("routeMessage() is ip's `-6 route replace ... dev mycni.vxlan onlink proto 77`", () => {
  const body = routeMessage(
    { dst: "fd00:10:244:2::/64", via: "fd00:10:244:2::", dev: vxlanDev, onlink: true },
    { protocol: 77, scope: 0, type: 1 },
  );
  assertEquals(
    [...body],
    [...hex(`
      0a 40 00 00 fe 4d 00 01  04 00 00 00 14 00 01 00
      fd 00 00 10 02 44 00 02  00 00 00 00 00 00 00 00
      14 00 05 00 fd 00 00 10  02 44 00 02 00 00 00 00
      00 00 00 00 08 00 04 00  04 00 00 00`)],
  );
});

Deno.test("routeMessage() is ip's `route del 10.244.2.0/24 via 192.0.2.12 proto 77`", () => {
  const body = routeMessage({ dst: "10.244.2.0/24", via: "192.0.2.12" }, {
    protocol: 77,
    scope: 255,
    type: 0,
  });
  assertEquals(
    [...body],
    [...hex(`
      02 18 00 00 fe 4d ff 00  00 00 00 00 08 00 01 00
      0a f4 02 00 08 00 05 00  c0 00 02 0c`)],
  );
});

Deno.test("routeGetMessage() is ip's `route get 192.0.2.12`", () => {
  assertEquals(
    [...routeGetMessage("192.0.2.12")],
    [...hex("02 20 00 00 00 00 00 00  00 10 00 00 08 00 01 00  c0 00 02 0c")],
  );
});

Deno.test("parseRoute() decodes the kernel's answer to `ip route get 198.51.100.13`", () => {
  // 198.51.100.13 via 192.0.2.1 dev u0 (ifindex 3) src 192.0.2.11, a cloned (cache) entry.
  const reply = hex(`
    02 20 00 00 fe 00 00 01  00 02 00 00 08 00 0f 00
    fe 00 00 00 08 00 01 00  c6 33 64 0d 08 00 04 00
    03 00 00 00 08 00 07 00  c0 00 02 0b 08 00 05 00
    c0 00 02 01 08 00 19 00  00 00 00 00 24 00 0c 00
    02 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00
    00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00`);
  assertEquals(parseRoute(reply), {
    family: 4,
    dst: "198.51.100.13/32",
    table: 254,
    protocol: 0,
    type: 1,
    via: "192.0.2.1",
    oif: 3,
    onlink: false,
    multipath: false,
  });
});

Deno.test("parseRoute() reads back what routeMessage() encodes, onlink flag included", () => {
  const body = routeMessage(
    { dst: "10.244.3.0/24", via: "10.244.3.0", dev: vxlanDev, onlink: true },
    { protocol: 77, scope: 0, type: 1 },
  );
  assertEquals(parseRoute(body), {
    family: 4,
    dst: "10.244.3.0/24",
    table: 254,
    protocol: 77,
    type: 1,
    via: "10.244.3.0",
    oif: 4,
    onlink: true,
    multipath: false,
  });
});

Deno.test("neighbourMessage() is ip's `-6 neigh replace ... lladdr ... nud permanent`", () => {
  const body = neighbourMessage(vxlanDev, { ip: "fd00:10:244:2::", mac: "0e:4d:c0:00:02:0c" });
  assertEquals(
    [...body],
    [...hex(`
      0a 00 00 00 04 00 00 00  80 00 00 00 14 00 01 00
      fd 00 00 10 02 44 00 02  00 00 00 00 00 00 00 00
      0a 00 02 00 0e 4d c0 00  02 0c 00 00`)],
  );
});

Deno.test("fdbMessage() is bridge's `fdb replace MAC dev mycni.vxlan dst IP self permanent`", () => {
  const body = fdbMessage(vxlanDev, { mac: "0e:4d:c0:00:02:0c", dst: "198.51.100.12" }, 0xc0);
  assertEquals(
    [...body],
    [...hex(`
      07 00 00 00 04 00 00 00  c0 00 02 00 0a 00 02 00
      0e 4d c0 00 02 0c 00 00  08 00 01 00 c6 33 64 0c`)],
  );
});

// `ip link add mycni.vxlan address 0e:4d:c0:00:02:0b mtu 1450 type vxlan id 1 local 192.0.2.11
// dstport 8472 nolearning`, after the netlink header.
const VXLAN_ADD = `
  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00
  0a 00 01 00 0e 4d c0 00  02 0b 00 00 08 00 04 00
  aa 05 00 00 10 00 03 00  6d 79 63 6e 69 2e 76 78
  6c 61 6e 00 34 00 12 00  09 00 01 00 76 78 6c 61
  6e 00 00 00 24 00 02 00  08 00 01 00 01 00 00 00
  08 00 04 00 c0 00 02 0b  05 00 07 00 00 00 00 00
  06 00 0f 00 21 18 00 00`;

Deno.test("vxlanAddMessage() is ip's `link add mycni.vxlan ... type vxlan ... nolearning`", () => {
  const body = vxlanAddMessage({
    vni: 1,
    port: 8472,
    local: "192.0.2.11",
    mac: "0e:4d:c0:00:02:0b",
    mtu: 1450,
  });
  assertEquals([...body], [...hex(VXLAN_ADD)]);
});

Deno.test("parseVxlanLink() reads VNI, port (network order), local and learning", () => {
  const body = hex(VXLAN_ADD);
  body.set([4, 0, 0, 0, 1, 0, 0, 0], 4); // ifindex 4, flags IFF_UP
  assertEquals(parseVxlanLink(body), {
    index: 4,
    mac: "0e:4d:c0:00:02:0b",
    mtu: 1450,
    up: true,
    kind: "vxlan",
    vni: 1,
    port: 8472,
    local: "192.0.2.11",
    learning: false,
  });
});
