import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { parseWatchEvent, readLines } from "../../../lib/kube/watch.ts";

Deno.test("parseWatchEvent() reads ADDED, BOOKMARK and a 410 ERROR", () => {
  assertEquals(parseWatchEvent('{"type":"ADDED","object":{"metadata":{"name":"n1"}}}'), {
    type: "ADDED",
    object: { metadata: { name: "n1" } },
  });
  assertEquals(
    parseWatchEvent(
      '{"type":"BOOKMARK","object":{"kind":"Node","metadata":{"resourceVersion":"12"}}}',
    ).type,
    "BOOKMARK",
  );
  assertEquals(
    parseWatchEvent(
      '{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}',
    ),
    { type: "ERROR", code: 410, message: "too old resource version: 1 (5)" },
  );
});

Deno.test("parseWatchEvent() throws on a line that is not an event", () => {
  assertThrows(() => parseWatchEvent("this is not json {"), /not JSON/);
  assertThrows(() => parseWatchEvent('{"type":"WHAT","object":{}}'), /known type/);
  assertThrows(() => parseWatchEvent('{"type":"ADDED"}'), /object/);
});

Deno.test("readLines() splits lines across arbitrary chunk boundaries", async () => {
  const text = '{"a":"é"}\n\n{"b":2}\n{"c":3}';
  const bytes = new TextEncoder().encode(text);
  // One byte per chunk: boundaries fall inside the two-byte "é" too.
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const b of bytes) c.enqueue(new Uint8Array([b]));
      c.close();
    },
  });
  const lines: string[] = [];
  for await (const line of readLines(body)) lines.push(line);
  assertEquals(lines, ['{"a":"é"}', '{"b":2}', '{"c":3}']);
});
