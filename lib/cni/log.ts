// The plugin's JSON-lines log: one line per invocation outcome, appended to the config's
// logFile. Never stdout (that is the protocol); a log that cannot be written never fails a verb.
import { dirname } from "node:path";
import type { LogLevel } from "./netconf.ts";

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Appends one record if `level` passes the configured threshold. */
export async function writeLog(
  file: string,
  threshold: LogLevel,
  level: LogLevel,
  record: Record<string, unknown>,
): Promise<void> {
  if (RANK[level] < RANK[threshold]) return;
  const line = JSON.stringify({ ts: new Date().toISOString(), level, ...record }) + "\n";
  try {
    await Deno.writeTextFile(file, line, { append: true, create: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) return;
    try {
      await Deno.mkdir(dirname(file), { recursive: true });
      await Deno.writeTextFile(file, line, { append: true, create: true });
    } catch { /* nowhere to log: the result on stdout still tells the runtime */ }
  }
}
