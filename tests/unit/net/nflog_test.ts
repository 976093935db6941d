// nfnetlink_log packet messages as the kernel builds them (nfnetlink_log.c __build_packet_message),
// parsed without a kernel: prefix, addresses, protocol and ports, IPv6 extension headers,
// fragments, the kernel's timestamp and sequence number.
import { attr, concat, strAttr } from "../../../lib/net/netlink.ts";
import { parseIpHeaders, parseNflogPacket } from "../../../lib/net/nflog.ts";
import { assertEquals } from "../../harness/assert.ts";

const NFULA_PACKET_HDR = 1, NFULA_TIMESTAMP = 3, NFULA_IFINDEX_OUTDEV = 5;
const NFULA_PAYLOAD = 9, NFULA_PREFIX = 10, NFULA_SEQ = 12;

function be(n: number, bytes: number): Uint8Array {
  const b = new Uint8Array(bytes);
  for (let i = bytes - 1; i >= 0; i--, n = Math.floor(n / 256)) b[i] = n & 0xff;
  return b;
}

/** An IPv4 header (20 bytes, no options) and the first 4 bytes of a transport header. */
function ipv4(src: number[], dst: number[], proto: number, ports: [number, number], frag = 0) {
  const h = new Uint8Array(24);
  h[0] = 0x45;
  h.set(be(frag, 2), 6);
  h[9] = proto;
  h.set(src, 12);
  h.set(dst, 16);
  h.set(be(ports[0], 2), 20);
  h.set(be(ports[1], 2), 22);
  return h;
}

/** An IPv6 header, `ext` extension headers (each 8 bytes: next header, length 0), then ports. */
function ipv6(src: number, dst: number, ext: number[], proto: number, ports: [number, number]) {
  const h = new Uint8Array(40 + 8 * ext.length + 4);
  h[0] = 0x60;
  const chain = [...ext, proto];
  h[6] = chain[0];
  const addr = (last: number) => Uint8Array.of(0xfd, 0, ...new Array(13).fill(0), last);
  h.set(addr(src), 8);
  h.set(addr(dst), 24);
  for (let i = 0; i < ext.length; i++) h[40 + 8 * i] = chain[i + 1];
  const off = 40 + 8 * ext.length;
  h.set(be(ports[0], 2), off);
  h.set(be(ports[1], 2), off + 2);
  return h;
}

function message(attrs: Uint8Array[]): Uint8Array {
  return concat([Uint8Array.of(2, 0, 0x26, 0x15), ...attrs]); // nfgenmsg: AF_INET, group 9749
}

Deno.test("parseNflogPacket() reads prefix, addresses, protocol, ports, hook, outdev and seq", () => {
  const body = message([
    attr(NFULA_PACKET_HDR, Uint8Array.of(0x08, 0x00, 2, 0)),
    attr(NFULA_IFINDEX_OUTDEV, be(7, 4)),
    attr(NFULA_PAYLOAD, ipv4([10, 244, 1, 2], [10, 244, 2, 3], 6, [40000, 80])),
    strAttr(NFULA_PREFIX, "mycni:i:0123456789abcdef"),
    attr(NFULA_SEQ, be(41, 4)),
  ]);
  assertEquals(parseNflogPacket(body, 1_000), {
    packet: {
      prefix: "mycni:i:0123456789abcdef",
      time: 1_000,
      hook: 2,
      family: 4,
      src: "10.244.1.2",
      dst: "10.244.2.3",
      proto: 6,
      sport: 40000,
      dport: 80,
      indev: undefined,
      outdev: 7,
    },
    seq: 41,
  });
});

Deno.test("parseNflogPacket() takes the kernel's timestamp when it sent one", () => {
  const ts = concat([be(0, 4), be(1_700_000_000, 4), be(0, 4), be(123_456, 4)]);
  const body = message([
    attr(NFULA_TIMESTAMP, ts),
    attr(NFULA_PAYLOAD, ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, [5353, 53])),
  ]);
  const { packet, seq } = parseNflogPacket(body, 1);
  assertEquals([packet.time, packet.prefix, packet.dport, seq], [
    1_700_000_000_123,
    "",
    53,
    undefined,
  ]);
});

Deno.test("parseNflogPacket() delivers a packet it cannot read, without addresses", () => {
  // An ARP payload (ethertype 0x0806) or none at all: still a packet, with its prefix.
  for (
    const attrs of [
      [
        attr(NFULA_PACKET_HDR, Uint8Array.of(0x08, 0x06, 2, 0)),
        attr(NFULA_PAYLOAD, new Uint8Array(28)),
      ],
      [],
    ]
  ) {
    const { packet } = parseNflogPacket(message([...attrs, strAttr(NFULA_PREFIX, "p")]), 5);
    assertEquals([packet.prefix, packet.family, packet.src, packet.dst, packet.proto], [
      "p",
      undefined,
      "",
      "",
      0,
    ]);
  }
});

Deno.test("parseIpHeaders() walks IPv6 extension headers to the ports", () => {
  assertEquals(parseIpHeaders(ipv6(2, 3, [], 17, [1000, 53])), {
    family: 6,
    src: "fd00::2",
    dst: "fd00::3",
    proto: 17,
    sport: 1000,
    dport: 53,
  });
  // Hop-by-hop, then destination options, then TCP.
  assertEquals(parseIpHeaders(ipv6(2, 3, [0, 60], 6, [1000, 443]))?.dport, 443);
  assertEquals(parseIpHeaders(ipv6(2, 3, [0, 60], 6, [1000, 443]))?.proto, 6);
  // SCTP puts its ports first too; ICMPv6 has none.
  assertEquals(parseIpHeaders(ipv6(2, 3, [], 132, [7, 9]))?.dport, 9);
  assertEquals(parseIpHeaders(ipv6(2, 3, [], 58, [0x8000, 0]))?.dport, undefined);
});

Deno.test("parseIpHeaders() reads no ports from a later fragment or a short copy", () => {
  const later = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 6, [1, 2], 0x0010); // offset 16 * 8 bytes
  assertEquals(parseIpHeaders(later)?.dport, undefined);
  const first = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 6, [1, 2], 0x2000); // MF set, offset 0
  assertEquals(parseIpHeaders(first)?.dport, 2);
  assertEquals(parseIpHeaders(later.subarray(0, 20))?.src, "10.0.0.1");
  assertEquals(parseIpHeaders(first.subarray(0, 22))?.dport, undefined);
  assertEquals(parseIpHeaders(new Uint8Array(10)), undefined);
  // A fragment header (44) with a non-zero offset: no ports.
  const frag6 = ipv6(2, 3, [44], 17, [1, 2]);
  frag6[40 + 2] = 0x01; // offset field (13 bits, then 3 flag bits)
  assertEquals(parseIpHeaders(frag6)?.dport, undefined);
  assertEquals(parseIpHeaders(frag6)?.proto, 17);
});
