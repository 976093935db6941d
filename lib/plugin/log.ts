// The plugin's JSON-lines log: one line per invocation outcome, appended to the config's
// logFile. Never stdout (that is the protocol); a log that cannot be written never fails a verb.
import type { LogLevel } from "../cni/netconf.ts";
import { makeDirs, writeTextFile } from "../sys/file.ts";
import { Errno, SyscallError } from "../sys/syscall.ts";

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Appends one record if `level` passes the configured threshold. */
export function writeLog(
  file: string,
  threshold: LogLevel,
  level: LogLevel,
  record: Record<string, unknown>,
): void {
  if (RANK[level] < RANK[threshold]) return;
  const line = JSON.stringify({ ts: isoTime(Date.now()), level, ...record }) + "\n";
  // Through lib/net/file.ts, as the IPAM store writes: Deno's file API would be set up for this
  // one append (~0.5 ms of every invocation).
  try {
    writeTextFile(file, line, { append: true });
  } catch (err) {
    if (!(err instanceof SyscallError && err.errno === Errno.ENOENT)) return;
    try {
      makeDirs(file.slice(0, file.lastIndexOf("/")) || "/");
      writeTextFile(file, line, { append: true });
    } catch { /* nowhere to log: the result on stdout still tells the runtime */ }
  }
}

/**
 * `new Date(ms).toISOString()`, without Date: the first toISOString() of a process sets up V8's
 * date machinery, ~1 ms of a plugin ADD for one timestamp. Days to civil date after Howard
 * Hinnant's `civil_from_days` (http://howardhinnant.github.io/date_algorithms.html).
 *
 * @example
 * isoTime(0); // "1970-01-01T00:00:00.000Z"
 */
export function isoTime(ms: number): string {
  const days = Math.floor(ms / 86_400_000), inDay = ms - days * 86_400_000;
  const z = days + 719_468; // days since 0000-03-01
  const era = Math.floor(z / 146_097), doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) -
      Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const p = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${p(year, 4)}-${p(month)}-${p(day)}T${p(Math.floor(inDay / 3_600_000))}:` +
    `${p(Math.floor(inDay / 60_000) % 60)}:${p(Math.floor(inDay / 1000) % 60)}.${
      p(inDay % 1000, 3)
    }Z`;
}
