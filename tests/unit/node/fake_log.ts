// A Logger for unit tests that keeps every line.
import type { LogFields, Logger } from "../../../lib/log/logger.ts";

/** One logged line. */
export interface Line {
  readonly level: "info" | "warn" | "error";
  readonly msg: string;
  readonly fields: LogFields;
}

/** A logger keeping its lines; `lines(msg)` gives the fields of each line with that message. */
export function fakeLog(): Logger & { all: Line[]; lines(msg: string): LogFields[] } {
  const all: Line[] = [];
  const at = (level: Line["level"]) => (msg: string, fields: LogFields = {}) =>
    void all.push({ level, msg, fields });
  return {
    all,
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    lines: (msg) => all.filter((l) => l.msg === msg).map((l) => l.fields),
  };
}
