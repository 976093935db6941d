import {
  type ConntrackEntry,
  encodeDelete,
  matcher,
  parseEntry,
} from "../../../lib/net/conntrack.ts";
import { concat } from "../../../lib/net/netlink.ts";
import { be32Attr } from "../../../lib/net/nfnetlink.ts";
import { assert, assertEquals } from "../../harness/assert.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

const tcp4: ConntrackEntry = {
  family: 4,
  orig: { src: "10.0.0.1", dst: "10.0.0.2", proto: 6, sport: 12345, dport: 80 },
  reply: { src: "10.0.0.2", dst: "10.0.0.1", proto: 6, sport: 80, dport: 12345 },
  zone: 7,
  id: 42,
};

Deno.test("encodeDelete() names the entry by original tuple, id and zone (nfnetlink_conntrack.h)", () => {
  assertEquals(
    hex(encodeDelete(tcp4)),
    [
      "02 00 00 00", // nfgenmsg: AF_INET
      "34 00 01 80", // CTA_TUPLE_ORIG, nested
      "14 00 01 80", // CTA_TUPLE_IP
      "08 00 01 00 0a 00 00 01", // CTA_IP_V4_SRC
      "08 00 02 00 0a 00 00 02", // CTA_IP_V4_DST
      "1c 00 02 80", // CTA_TUPLE_PROTO
      "05 00 01 00 06 00 00 00", // CTA_PROTO_NUM
      "06 00 02 00 30 39 00 00", // CTA_PROTO_SRC_PORT 12345
      "06 00 03 00 00 50 00 00", // CTA_PROTO_DST_PORT 80
      "08 00 0c 00 00 00 00 2a", // CTA_ID 42
      "06 00 12 00 00 07 00 00", // CTA_ZONE 7
    ].join(" "),
  );
});

Deno.test("parseEntry() reads back what a dump holds, ports, ICMP and IPv6 alike", () => {
  const entries: ConntrackEntry[] = [
    tcp4,
    {
      family: 6,
      orig: { src: "fd00::1", dst: "fd00::2", proto: 17, sport: 5353, dport: 53 },
      reply: { src: "fd00::2", dst: "fd00::1", proto: 17, sport: 53, dport: 5353 },
      zone: 0,
      id: 7,
    },
    {
      family: 4,
      orig: { src: "10.0.0.1", dst: "10.0.0.3", proto: 1, icmp: { id: 99, type: 8, code: 0 } },
      reply: { src: "10.0.0.3", dst: "10.0.0.1", proto: 1, icmp: { id: 99, type: 0, code: 0 } },
      zone: 0,
      id: 8,
    },
  ];
  for (const e of entries) {
    // A dump's entry: the delete's body with the reply tuple beside the original.
    const del = encodeDelete({ ...e, id: undefined });
    const reply = encodeDelete({ ...e, orig: e.reply, id: undefined, zone: 0 }).slice(4);
    reply[2] = 2; // CTA_TUPLE_REPLY
    const body = concat([del, reply, be32Attr(12, e.id!)]);
    assertEquals(parseEntry(body), e);
  }
});

Deno.test("matcher() matches addresses on either tuple, and a flow on the original one", () => {
  assert(matcher({})(tcp4));
  assert(matcher({ addresses: ["10.0.0.2"] })(tcp4));
  assert(matcher({ addresses: ["10.9.9.9", "10.0.0.1"] })(tcp4));
  assert(!matcher({ addresses: ["10.0.0.3"] })(tcp4));
  // NAT: the reply comes from another address than the one the client asked.
  const natted = { ...tcp4, reply: { ...tcp4.reply, src: "10.244.1.5" } };
  assert(matcher({ addresses: ["10.244.1.5"] })(natted));
  assert(matcher({ src: "10.0.0.1", dst: "10.0.0.2", proto: "tcp", dport: 80 })(tcp4));
  assert(!matcher({ src: "10.0.0.1", proto: "udp" })(tcp4));
  assert(!matcher({ dport: 81 })(tcp4));
  assert(!matcher({ src: "10.0.0.2" })(tcp4));
  const v6 = { ...tcp4, family: 6 as const, orig: { ...tcp4.orig, src: "fd00::1" } };
  assert(matcher({ addresses: ["fd00:0:0::1"] })(v6), "addresses compare in canonical form");
});
