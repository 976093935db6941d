import { isoTime, writeLog } from "../../../lib/plugin/log.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("isoTime() formats a timestamp exactly as Date.prototype.toISOString does", () => {
  const fixed = [0, 1, 999, 86_399_999, 86_400_000, 951_782_400_000, 4_107_542_399_999];
  // Leap days, month and year ends, and many random instants between 1970 and 2100.
  const leap = [Date.UTC(2000, 1, 29, 12), Date.UTC(2024, 1, 29), Date.UTC(2100, 2, 1)];
  const ends = [Date.UTC(2023, 11, 31, 23, 59, 59, 999), Date.UTC(2025, 0, 1)];
  const random = Array.from({ length: 2000 }, () => Math.floor(Math.random() * 4.1e12));
  for (const ms of [...fixed, ...leap, ...ends, ...random]) {
    assertEquals(isoTime(ms), new Date(ms).toISOString(), `at ${ms} ms`);
  }
});

Deno.test("writeLog() appends one JSON line with the time, level and fields", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mycni-log-" });
  try {
    const file = `${dir}/sub/mycni.log`;
    const before = Date.now();
    writeLog(file, "info", "info", { verb: "ADD", durationMs: 1.5 });
    writeLog(file, "info", "debug", { verb: "skipped" });
    const lines = (await Deno.readTextFile(file)).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(lines.length, 1);
    assertEquals({ ...lines[0], ts: undefined }, {
      ts: undefined,
      level: "info",
      verb: "ADD",
      durationMs: 1.5,
    });
    const ts = Date.parse(lines[0].ts);
    assertEquals(ts >= before && ts <= Date.now(), true, `ts ${lines[0].ts}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
