// The element batch against what nft sends for the same change, byte for byte (fixtures in
// element_fixtures.ts, captured from nft 1.0.6 and re-captured by the privileged suite).
import {
  decodeElements,
  type ElementChange,
  elementTypeSupported,
  encodeElementMessages,
} from "../../../lib/nft/element_codec.ts";
import { encodeBatch, NFNL_SUBSYS_NFTABLES } from "../../../lib/net/nfnetlink.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../../harness/assert.ts";
import { normalised, splitMessages } from "../../harness/nft_capture.ts";
import { batchDigest, CASES, SPLIT_CASE } from "./element_fixtures.ts";

function ourBatch(changes: readonly ElementChange[], seq = 100): Uint8Array[] {
  const messages = encodeElementMessages("inet mycni", changes);
  return splitMessages(encodeBatch(NFNL_SUBSYS_NFTABLES, messages, seq));
}

for (const c of CASES) {
  Deno.test(`encodeElementMessages() sends what nft sends for: ${c.nft.trim()}`, () => {
    assertEquals(ourBatch(c.changes).map(normalised), c.hex);
  });
}

Deno.test("encodeElementMessages() splits a long list where nft does, numbering as nft does", async () => {
  const changes = SPLIT_CASE.elements.map((element) => ({
    op: "add" as const,
    set: "ingress4",
    type: "ipv4_addr : verdict",
    element,
  }));
  const hex = ourBatch(changes).map(normalised);
  assertEquals(hex.length, SPLIT_CASE.messages);
  assertEquals(await batchDigest(hex), SPLIT_CASE.sha256);
});

Deno.test("encodeBatch() numbers the messages in order and asks an ack for each element message", () => {
  const batch = ourBatch(CASES[CASES.length - 1].changes, 7);
  const header = (m: Uint8Array) => new DataView(m.buffer, m.byteOffset);
  assertEquals(batch.map((m) => header(m).getUint32(8, true)), [7, 8, 9, 10, 11]);
  // BATCH_BEGIN and BATCH_END: NLM_F_REQUEST only (the kernel acks neither).
  assertEquals(batch.map((m) => header(m).getUint16(6, true)), [0x1, 0x5, 0x405, 0x405, 0x1]);
});

const MAP4 = "ipv4_addr : verdict";
const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

Deno.test("encodeElementMessages() splits a long list where its 16-bit length would overflow", () => {
  const changes: ElementChange[] = Array.from({ length: 5000 }, (_, i) => ({
    op: "add",
    set: "ingress4",
    type: MAP4,
    element: `${ip(i)} : jump ing_${i % 7}`,
  }));
  const messages = encodeElementMessages("inet mycni", changes);
  assert(messages.length > 1, "one message cannot hold 5000 map elements");
  const seen = new Map<string, string>();
  for (const [i, m] of messages.entries()) {
    // nfgenmsg + table "mycni" (12) + set "ingress4" (16): the element list starts at 32.
    const listLen = new DataView(m.body.buffer, m.body.byteOffset).getUint16(32, true);
    assert(listLen <= 0xffff, `list of ${listLen} bytes`);
    // Full up to the last element that fits (a map element here takes at most 48 bytes).
    if (i < messages.length - 1) assert(listLen > 0xffff - 48, `list of ${listLen} bytes`);
    decodeElements(MAP4, m.body, seen);
  }
  assertEquals([...seen.values()], changes.map((c) => c.element));
});

Deno.test("encodeElementMessages() groups consecutive changes of one set and op", () => {
  const s = (op: "add" | "delete", set: string, element: string) => ({
    op,
    set,
    type: "ipv4_addr",
    element,
  });
  const messages = encodeElementMessages("inet mycni", [
    s("delete", "a", "10.0.0.1"),
    s("delete", "a", "10.0.0.2"),
    s("add", "a", "10.0.0.3"),
    s("add", "b", "10.0.0.3"),
    s("add", "b", "10.0.0.4"),
  ]);
  assertEquals(messages.map((m) => m.changes.length), [2, 1, 2]);
  assertEquals(messages.map((m) => m.type), [0x0a0e, 0x0a0c, 0x0a0c]);
});

Deno.test("decodeElements() reads back every element kind as ruleset.ts writes it", () => {
  const cases: [string, string[]][] = [
    ["ipv4_addr", ["10.244.1.7", "0.0.0.0", "255.255.255.255"]],
    ["ipv6_addr", ["fd00::1", "2001:db8::a:b", "::"]],
    ["ipv4_addr . ipv4_addr", ["10.0.0.1 . 10.0.0.2"]],
    ["ipv6_addr . ipv6_addr", ["fd00::1 . fd00::2"]],
    ["ipv4_addr . inet_proto . inet_service", ["10.0.0.1 . tcp . 8080", "10.0.0.1 . 99 . 0"]],
    [MAP4, ["10.0.0.1 : jump ing_a", "10.0.0.2 : goto x", "10.0.0.3 : accept", "10.0.0.4 : drop"]],
    ["ipv6_addr : verdict", ["fd00::9 : jump egr_0123456789abcdef"]],
  ];
  for (const [type, elements] of cases) {
    const changes = elements.map((element) => ({ op: "add" as const, set: "x", type, element }));
    const out = new Map<string, string>();
    for (const m of encodeElementMessages("inet mycni", changes)) decodeElements(type, m.body, out);
    assertEquals([...out.values()], elements, type);
    assertEquals([...out.keys()], elements.map((e) => e.split(" : ")[0]), type);
  }
});

Deno.test("decodeElements() refuses a key whose length is not its type's", () => {
  const [m] = encodeElementMessages("inet mycni", [
    { op: "add", set: "x", type: "ipv6_addr", element: "fd00::1" },
  ]);
  const err = assertThrows(() => decodeElements("ipv4_addr", m.body, new Map()));
  assertMatch(err.message, /key of 16 bytes is not of type ipv4_addr \(4 bytes\)/);
});

Deno.test("encodeElementMessages() refuses interval sets and elements not of the set's type, naming them", () => {
  const refuse = (c: Partial<ElementChange>, re: RegExp) => {
    const change = { op: "add", set: "s", type: "ipv4_addr", element: "10.0.0.1", ...c } as const;
    assertMatch(assertThrows(() => encodeElementMessages("inet mycni", [change])).message, re);
  };
  refuse(
    { interval: true },
    /^Cannot add element inet mycni s \{ 10.0.0.1 \} over nfnetlink: s is an interval set.*nft -f$/,
  );
  refuse(
    { element: "fd00::1" },
    /^Cannot add element inet mycni s \{ fd00::1 \} \(type ipv4_addr\): fd00::1 is not an IPv4 address$/,
  );
  refuse({ element: "10.0.0.1 . 10.0.0.2" }, /the key has 2 components/);
  refuse({ type: MAP4 }, /a map element needs a verdict/);
  refuse({ type: MAP4, element: "10.0.0.1 : jump" }, /"jump" is not a verdict/);
  refuse({ element: "10.0.0.1 : accept" }, /a set element has no data/);
  refuse(
    { type: "ipv4_addr . inet_service", element: "10.0.0.1 . 70000" },
    /70000 is not a number from 0 to 65535/,
  );
  refuse({ type: "ether_addr" }, /key type ether_addr is not supported/);
  refuse(
    { type: "ipv4_addr : ipv4_addr", element: "10.0.0.1 : 10.0.0.2" },
    /only sets and verdict maps/,
  );
  assertMatch(
    assertThrows(() => encodeElementMessages("mycni", [])).message,
    /Table "mycni" is not "<family> <name>"/,
  );
});

Deno.test("elementTypeSupported() says which set types the batch can encode", () => {
  for (
    const t of ["ipv4_addr", "ipv6_addr . ipv6_addr", MAP4, "ipv4_addr . inet_proto . inet_service"]
  ) {
    assert(elementTypeSupported(t), t);
  }
  for (const t of ["ether_addr", "ipv4_addr : ipv4_addr", "ifname"]) {
    assert(!elementTypeSupported(t), t);
  }
});
