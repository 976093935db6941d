// The plugin's JSON-lines log: one line per invocation outcome, appended to the config's
// logFile. Never stdout (that is the protocol); a log that cannot be written never fails a verb.
import type { LogLevel } from "./netconf.ts";

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Appends one record if `level` passes the configured threshold. */
export function writeLog(
  file: string,
  threshold: LogLevel,
  level: LogLevel,
  record: Record<string, unknown>,
): void {
  if (RANK[level] < RANK[threshold]) return;
  const line = JSON.stringify({ ts: new Date().toISOString(), level, ...record }) + "\n";
  try {
    Deno.writeTextFileSync(file, line, { append: true, create: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) return;
    try {
      Deno.mkdirSync(file.slice(0, file.lastIndexOf("/")) || "/", { recursive: true });
      Deno.writeTextFileSync(file, line, { append: true, create: true });
    } catch { /* nowhere to log: the result on stdout still tells the runtime */ }
  }
}
