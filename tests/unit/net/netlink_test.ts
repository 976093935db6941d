import {
  attr,
  concat,
  decodeCString,
  nested,
  NetlinkError,
  parseAttrs,
  Rtnl,
  strAttr,
  u32Attr,
} from "../../../lib/net/netlink.ts";
import { listRoutes } from "../../../lib/net/route.ts";
import { addrList, ipBytes, linkGet, linkList } from "../../../lib/net/rtnl.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../../harness/assert.ts";

Deno.test("attributes are length-prefixed, padded to 4 bytes, and parse back, nested too", () => {
  const name = strAttr(3, "eth0");
  assertEquals([...name], [9, 0, 3, 0, 101, 116, 104, 48, 0, 0, 0, 0]);
  const info = nested(18, strAttr(1, "veth"), u32Attr(4, 1500));
  const top = parseAttrs(concat([name, info, attr(1, Uint8Array.of(2, 0, 0, 0, 0, 1))]));
  assertEquals(decodeCString(top.get(3)!), "eth0");
  assertEquals([...top.get(1)!], [2, 0, 0, 0, 0, 1]);
  const inner = parseAttrs(top.get(18)!);
  assertEquals(decodeCString(inner.get(1)!), "veth");
  assertEquals(
    new DataView(inner.get(4)!.buffer, inner.get(4)!.byteOffset).getUint32(0, true),
    1500,
  );
});

Deno.test("addresses go on the wire in network byte order", () => {
  assertEquals([...ipBytes("10.244.1.5")], [10, 244, 1, 5]);
  assertEquals([...ipBytes("fd00::1:2")], [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
});

// Read-only requests in the test's own netns: no privileges needed, nothing changed.
Deno.test("an rtnetlink socket answers GETLINK for lo and reports a missing link as absent", () => {
  using nl = Rtnl.open();
  const lo = linkGet(nl, "lo");
  assertEquals(lo?.index, 1);
  assertEquals(lo?.mac, "00:00:00:00:00:00");
  assertEquals(linkGet(nl, "mycni-nosuch"), undefined);
});

Deno.test("a request the kernel refuses names the ip command, errno's text and the kernel's reason", () => {
  using nl = Rtnl.open();
  const err = assertThrows(() => linkGet(nl, "x".repeat(40)));
  assert(err instanceof NetlinkError);
  assertEquals(err.errno, 34);
  assertMatch(err.message, /^ip link show dev x{40} \(netlink, in the node netns\): /);
  assertMatch(err.message, /Numerical result out of range \(.+\)$/);
});

Deno.test("dumps list links, addresses and routes as ip shows them (read-only, our netns)", () => {
  using nl = Rtnl.open();
  const lo = linkList(nl).find((l) => l.name === "lo");
  assertEquals([lo?.index, lo?.mtu], [1, 65536]);
  assert(addrList(nl).some((a) => a.index === 1 && a.address === "127.0.0.1/8"));
  assert(listRoutes(nl, 4).some((r) => r.dst === "127.0.0.0/8" && r.table === 255));
});

Deno.test("Rtnl.open() of a path that is no network namespace names it with errno's text", () => {
  const missing = assertThrows(() => Rtnl.open("/nonexistent/mycni-netns"));
  assertMatch(
    missing.message,
    /^open netns \/nonexistent\/mycni-netns: No such file or directory$/,
  );
  // Opens fine, but setns refuses a file that is not a namespace (root only gets that far).
  if (Deno.uid() === 0) {
    const notNetns = assertThrows(() => Rtnl.open("/dev/null"));
    assertMatch(notNetns.message, /^setns \/dev\/null: Invalid argument$/);
  }
  // The thread is back in its own netns: a socket opened now sees our lo.
  using nl = Rtnl.open();
  assertEquals(linkGet(nl, "lo")?.index, 1);
});
