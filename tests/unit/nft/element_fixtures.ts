// What nft 1.0.6 sent the kernel for element changes, captured from its batch (strace -e
// write=all of `nft -f <file>`, tests/harness/nft_capture.ts) in a netns holding SETUP, and
// normalised (sequence numbers, port id, NLM_F_ACK and nft's NFTA_SET_ELEM_LIST_SET_ID taken
// out: see normalised()). One hex string per message: BATCH_BEGIN, the element messages,
// BATCH_END. tests/integration/nft_elements_test.ts captures them again from the nft on the
// machine and fails when they differ, so these cannot rot.
import type { ElementChange } from "../../../lib/nft/element_codec.ts";

/** The table the changes were made to: the agent's set and map kinds, and a padded concat. */
export const SETUP = `table inet mycni {
  set s4 { type ipv4_addr; elements = { 10.0.0.9 } }
  set s6 { type ipv6_addr; }
  set self4 { type ipv4_addr . ipv4_addr; }
  set self6 { type ipv6_addr . ipv6_addr; }
  set svc { type ipv4_addr . inet_proto . inet_service; }
  chain ing_a { }
  chain egr_b { }
  map ingress4 { type ipv4_addr : verdict; elements = { 10.0.0.1 : jump ing_a } }
  map ingress6 { type ipv6_addr : verdict; }
  map vm { type ipv4_addr : verdict; }
}
`;

/** One change as nft -f text, as our changes, and nft's batch. */
export interface ElementFixture {
  readonly nft: string;
  readonly changes: readonly ElementChange[];
  readonly hex: readonly string[];
}

const V4 = "ipv4_addr", V6 = "ipv6_addr", MAP4 = "ipv4_addr : verdict";

export const CASES: readonly ElementFixture[] = [
  {
    nft: "add element inet mycni s4 { 10.0.0.9, 10.0.0.2 }\n",
    changes: [
      { op: "add", set: "s4", type: V4, element: "10.0.0.9" },
      { op: "add", set: "s4", type: V4, element: "10.0.0.2" },
    ],
    hex: [
      "140000001000010000000000000000000000000a",
      "4c0000000c0a01040000000000000000010000000a0001006d79636e69000000070002007334000024000380100001800c000180080001000a000009100002800c000180080001000a000002",
      "140000001100010000000000000000000000000a",
    ],
  },
  {
    nft: "add element inet mycni s6 { fd00::1, 2001:db8::a:b }\n",
    changes: [
      { op: "add", set: "s6", type: V6, element: "fd00::1" },
      { op: "add", set: "s6", type: V6, element: "2001:db8::a:b" },
    ],
    hex: [
      "140000001000010000000000000000000000000a",
      "640000000c0a01040000000000000000010000000a0001006d79636e6900000007000200733600003c0003801c0001801800018014000100fd0000000000000000000000000000011c000280180001801400010020010db80000000000000000000a000b",
      "140000001100010000000000000000000000000a",
    ],
  },
  {
    nft: "add element inet mycni self4 { 10.0.0.1 . 10.0.0.1 }\n",
    changes: [
      { op: "add", set: "self4", type: `${V4} . ${V4}`, element: "10.0.0.1 . 10.0.0.1" },
    ],
    hex: [
      "140000001000010000000000000000000000000a",
      "440000000c0a01040000000000000000010000000a0001006d79636e690000000a00020073656c66340000001800038014000180100001800c0001000a0000010a000001",
      "140000001100010000000000000000000000000a",
    ],
  },
  {
    nft: "add element inet mycni self6 { fd00::1 . fd00::1 }\n",
    changes: [
      { op: "add", set: "self6", type: `${V6} . ${V6}`, element: "fd00::1 . fd00::1" },
    ],
    hex: [
      "140000001000010000000000000000000000000a",
      "5c0000000c0a01040000000000000000010000000a0001006d79636e690000000a00020073656c6636000000300003802c0001802800018024000100fd000000000000000000000000000001fd000000000000000000000000000001",
      "140000001100010000000000000000000000000a",
    ],
  },
  {
    // A protocol (1 byte) and a port (2 bytes) each padded to 4 in the key.
    nft: "add element inet mycni svc { 10.0.0.1 . tcp . 80, 10.0.0.2 . udp . 53 }\n",
    changes: [
      {
        op: "add",
        set: "svc",
        type: `${V4} . inet_proto . inet_service`,
        element: "10.0.0.1 . tcp . 80",
      },
      {
        op: "add",
        set: "svc",
        type: `${V4} . inet_proto . inet_service`,
        element: "10.0.0.2 . udp . 53",
      },
    ],
    hex: [
      "140000001000010000000000000000000000000a",
      "5c0000000c0a01040000000000000000010000000a0001006d79636e690000000800020073766300340003801800018014000180100001000a00000106000000005000001800028014000180100001000a0000021100000000350000",
      "140000001100010000000000000000000000000a",
    ],
  },
  {
    nft: "add element inet mycni ingress4 { 10.0.0.2 : jump ing_a, 10.0.0.3 : jump egr_b }\n",
    changes: [
      { op: "add", set: "ingress4", type: MAP4, element: "10.0.0.2 : jump ing_a" },
      { op: "add", set: "ingress4", type: MAP4, element: "10.0.0.3 : jump egr_b" },
    ],
    hex: [
      "140000001000010000000000000000000000000a",
      "8c0000000c0a01040000000000000000010000000a0001006d79636e690000000d000200696e677265737334000000005c0003802c0001800c000180080001000a0000021c0002801800028008000100fffffffd0a000200696e675f610000002c0002800c000180080001000a0000031c0002801800028008000100fffffffd0a0002006567725f62000000",
      "140000001100010000000000000000000000000a",
    ],
  },
  {
    nft: "add element inet mycni ingress6 { fd00::7 : jump ing_a }\n",
    changes: [
      { op: "add", set: "ingress6", type: `${V6} : verdict`, element: "fd00::7 : jump ing_a" },
    ],
    hex: [
      "140000001000010000000000000000000000000a",
      "6c0000000c0a01040000000000000000010000000a0001006d79636e690000000d000200696e677265737336000000003c000380380001801800018014000100fd0000000000000000000000000000071c0002801800028008000100fffffffd0a000200696e675f61000000",
      "140000001100010000000000000000000000000a",
    ],
  },
  {
    nft:
      "add element inet mycni vm { 10.0.0.7 : accept, 10.0.0.8 : drop, 10.0.0.9 : goto ing_a }\n",
    changes: [
      { op: "add", set: "vm", type: MAP4, element: "10.0.0.7 : accept" },
      { op: "add", set: "vm", type: MAP4, element: "10.0.0.8 : drop" },
      { op: "add", set: "vm", type: MAP4, element: "10.0.0.9 : goto ing_a" },
    ],
    hex: [
      "140000001000010000000000000000000000000a",
      "980000000c0a01040000000000000000010000000a0001006d79636e6900000007000200766d000070000380200001800c000180080001000a000007100002800c0002800800010000000001200002800c000180080001000a000008100002800c00028008000100000000002c0003800c000180080001000a0000091c0002801800028008000100fffffffc0a000200696e675f61000000",
      "140000001100010000000000000000000000000a",
    ],
  },
  {
    nft: "delete element inet mycni s4 { 10.0.0.9 }\n",
    changes: [{ op: "delete", set: "s4", type: V4, element: "10.0.0.9" }],
    hex: [
      "140000001000010000000000000000000000000a",
      "3c0000000e0a01000000000000000000010000000a0001006d79636e69000000070002007334000014000380100001800c000180080001000a000009",
      "140000001100010000000000000000000000000a",
    ],
  },
  {
    // A pod whose verdict changed, and its self entry: three messages in one transaction.
    nft: [
      "delete element inet mycni ingress4 { 10.0.0.1 }",
      "add element inet mycni ingress4 { 10.0.0.1 : jump egr_b }",
      "add element inet mycni self4 { 10.0.0.1 . 10.0.0.1 }",
      "",
    ].join("\n"),
    changes: [
      { op: "delete", set: "ingress4", type: MAP4, element: "10.0.0.1 : jump ing_a" },
      { op: "add", set: "ingress4", type: MAP4, element: "10.0.0.1 : jump egr_b" },
      { op: "add", set: "self4", type: `${V4} . ${V4}`, element: "10.0.0.1 . 10.0.0.1" },
    ],
    hex: [
      "140000001000010000000000000000000000000a",
      "440000000e0a01000000000000000000010000000a0001006d79636e690000000d000200696e6772657373340000000014000380100001800c000180080001000a000001",
      "600000000c0a01040000000000000000010000000a0001006d79636e690000000d000200696e67726573733400000000300003802c0001800c000180080001000a0000011c0002801800028008000100fffffffd0a0002006567725f62000000",
      "440000000c0a01040000000000000000010000000a0001006d79636e690000000a00020073656c66340000001800038014000180100001800c0001000a0000010a000001",
      "140000001100010000000000000000000000000a",
    ],
  },
];

/**
 * A list too long for one message: 3000 map elements in one command. nft split it in three
 * NEWSETELEM messages (the list's length is 16 bits); stored as the SHA-256 of the normalised
 * messages' hex joined by newlines (130 KB of hex otherwise).
 */
export const SPLIT_CASE = {
  elements: Array.from({ length: 3000 }, (_, i) => `10.1.${i >> 8}.${i & 255} : jump ing_a`),
  get nft(): string {
    return `add element inet mycni ingress4 { ${this.elements.join(", ")} }\n`;
  },
  messages: 5,
  sha256: "d044515b8228019bf75594e8cbef8401a4648ae21dc7d2f5184e37cdbc13273d",
};

/** The digest SPLIT_CASE stores. */
export async function batchDigest(hex: readonly string[]): Promise<string> {
  const data = new TextEncoder().encode(hex.join("\n"));
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}
