import {
  AdmissionProtocolError,
  formatMessage,
  parseAdmissionAnswer,
  parseAdmissionRequest,
  readMessageLine,
  readMessageLineSync,
} from "../../../lib/plugin/admission_protocol.ts";
import { assertEquals, assertMatch, assertRejects, assertThrows } from "../../harness/assert.ts";

const admit = {
  version: 1,
  kind: "admit",
  containerId: "c1",
  ifname: "eth0",
  pod: { namespace: "default", name: "web-0" },
  ips: ["10.244.1.5", "fd00:10:244:1::5"],
};

Deno.test("parseAdmissionRequest() reads what formatMessage() writes, for every kind", () => {
  const release = { version: 1, kind: "release", containerId: "c1", ifname: "eth0" } as const;
  const withIps = { ...release, ips: ["10.244.1.5"] };
  for (const req of [admit, release, withIps, { version: 1, kind: "ping" }]) {
    const line = formatMessage(req as never);
    assertEquals(line.endsWith("\n") && !line.slice(0, -1).includes("\n"), true);
    assertEquals(parseAdmissionRequest(line.trimEnd()), req);
  }
});

Deno.test("parseAdmissionRequest() takes an admit without pod and ignores unknown fields", () => {
  const { pod: _, ...bare } = admit;
  assertEquals(parseAdmissionRequest(JSON.stringify(bare)), bare);
  assertEquals(parseAdmissionRequest(JSON.stringify({ ...admit, podUid: "x" })), admit);
  assertEquals(parseAdmissionRequest(JSON.stringify({ ...admit, pod: null })), bare);
});

const badRequests: [string, unknown, RegExp][] = [
  ["not JSON", "{", /not JSON/],
  ["not an object", [1], /not a JSON object/],
  ["no version", { ...admit, version: undefined }, /"version": want 1, got undefined/],
  ["other version", { ...admit, version: 2 }, /"version": want 1, got 2/],
  ["unknown kind", { ...admit, kind: "adopt" }, /"kind": want "admit", "release" or "ping"/],
  ["no kind", { version: 1 }, /"kind"/],
  ["no containerId", { ...admit, containerId: undefined }, /"containerId": want a non-empty/],
  ["bad containerId", { ...admit, containerId: "../x" }, /"containerId": Invalid characters/],
  ["ifname too long", { ...admit, ifname: "a".repeat(16) }, /"ifname".*longer than 15/],
  ["ifname numeric", { ...admit, ifname: 0 }, /"ifname": want a non-empty string/],
  ["pod a string", { ...admit, pod: "default/web-0" }, /"pod": want/],
  ["pod without name", { ...admit, pod: { namespace: "default" } }, /"pod.name"/],
  ["pod name with slash", { ...admit, pod: { namespace: "a", name: "b/c" } }, /"pod.name"/],
  ["namespace upper case", { ...admit, pod: { namespace: "A", name: "b" } }, /"pod.namespace"/],
  ["ips missing", { ...admit, ips: undefined }, /"ips": want a list of 1 to 8/],
  ["ips empty", { ...admit, ips: [] }, /"ips": want a list/],
  ["ips not strings", { ...admit, ips: [5] }, /"ips\[0\]": 5 is not an IP address/],
  ["ip with prefix", { ...admit, ips: ["10.244.1.5/24"] }, /"ips\[0\]".*not an IP address/],
  ["ip not canonical", { ...admit, ips: ["10.244.1.5", "FD00::5"] }, /"ips\[1\]".*canonical/],
  ["ip twice", { ...admit, ips: ["10.244.1.5", "10.244.1.5"] }, /"ips\[1\]".*twice/],
  ["release without ifname", { version: 1, kind: "release", containerId: "c" }, /"ifname"/],
];

for (const [what, input, re] of badRequests) {
  Deno.test(`parseAdmissionRequest() refuses ${what}, naming the field`, () => {
    const err = assertThrows(() =>
      parseAdmissionRequest(typeof input === "string" ? input : JSON.stringify(input))
    );
    assertEquals(err instanceof AdmissionProtocolError, true, String(err));
    assertMatch(err.message, re);
  });
}

Deno.test("parseAdmissionAnswer() reads ok and an error with its reason", () => {
  assertEquals(parseAdmissionAnswer('{"version":1,"ok":true}'), { version: 1, ok: true });
  assertEquals(parseAdmissionAnswer('{"version":1,"ok":false,"error":"no"}'), {
    version: 1,
    ok: false,
    error: "no",
  });
});

const badAnswers: [string, RegExp][] = [
  ["", /not JSON/],
  ["null", /not a JSON object/],
  ['{"ok":true}', /"version"/],
  ['{"version":1}', /"ok": want true or false/],
  ['{"version":1,"ok":"yes"}', /"ok"/],
  ['{"version":1,"ok":false}', /"error": want a non-empty string/],
  ['{"version":1,"ok":false,"error":""}', /"error"/],
];

for (const [line, re] of badAnswers) {
  Deno.test(`parseAdmissionAnswer() refuses ${JSON.stringify(line)}`, () => {
    const err = assertThrows(() => parseAdmissionAnswer(line));
    assertEquals(err instanceof AdmissionProtocolError, true, String(err));
    assertMatch(err.message, re);
  });
}

/** A connection that delivers `chunks` one read at a time, then the end. */
function fakeConn(chunks: string[]) {
  const bytes = chunks.map((c) => new TextEncoder().encode(c));
  return {
    read(p: Uint8Array): Promise<number | null> {
      const next = bytes.shift();
      if (next === undefined) return Promise.resolve(null);
      p.set(next.subarray(0, p.length));
      if (next.length > p.length) bytes.unshift(next.subarray(p.length));
      return Promise.resolve(Math.min(next.length, p.length));
    },
    write: (p: Uint8Array) => Promise.resolve(p.length),
  };
}

Deno.test("readMessageLine() joins a line split across reads and stops at its newline", async () => {
  assertEquals(await readMessageLine(fakeConn(['{"ver', 'sion":1}\n{"next"'])), '{"version":1}');
  assertEquals(await readMessageLine(fakeConn(["\n"])), "");
});

Deno.test("readMessageLine() gives undefined at an early end and refuses an endless line", async () => {
  assertEquals(await readMessageLine(fakeConn([])), undefined);
  assertEquals(await readMessageLine(fakeConn(['{"version":1}'])), undefined);
  const err = await assertRejects(() => readMessageLine(fakeConn(["x".repeat(20_000)])));
  assertMatch(err.message, /longer than 16384 bytes/);
});

Deno.test("readMessageLineSync() reads as readMessageLine() does, from a reader that returns at once", () => {
  // The plugin's socket (lib/sys/unix_socket.ts) returns 0 at the end where a Deno.Conn gives null.
  const sync = (chunks: string[]) => {
    const bytes = chunks.map((c) => new TextEncoder().encode(c));
    return (into: Uint8Array) => {
      const next = bytes.shift();
      if (next === undefined) return 0;
      into.set(next.subarray(0, into.length));
      if (next.length > into.length) bytes.unshift(next.subarray(into.length));
      return Math.min(next.length, into.length);
    };
  };
  assertEquals(readMessageLineSync(sync(['{"ver', 'sion":1}\n{"next"'])), '{"version":1}');
  assertEquals(readMessageLineSync(sync([])), undefined);
  assertEquals(readMessageLineSync(sync(['{"version":1}'])), undefined);
  const err = assertThrows(() => readMessageLineSync(sync(["x".repeat(20_000)])));
  assertMatch(err.message, /longer than 16384 bytes/);
});
