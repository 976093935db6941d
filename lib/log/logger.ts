// The agent's log: one JSON object per line on stderr, one line per change it makes.

/** Fields that say who and what: dst/via, node, chain, file. */
export type LogFields = Record<string, unknown>;

/** Where log lines go. */
export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

/**
 * A logger writing JSON lines through `write` (stderr by default).
 *
 * @example
 * const log = createLogger();
 * log.info("route added", { dst: "10.244.2.0/24", via: "192.0.2.12" });
 */
export function createLogger(write: (line: string) => void = writeStderr): Logger {
  const emit = (level: string) => (msg: string, fields: LogFields = {}) =>
    write(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields }) + "\n");
  return { info: emit("info"), warn: emit("warn"), error: emit("error") };
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  const bytes = encoder.encode(line);
  let off = 0;
  while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
}
