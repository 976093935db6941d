// The watch protocol's wire format: one JSON event per line of a chunked HTTP body.
// https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes

/** A watch event as the API server sends it. */
export type WatchEvent =
  | { readonly type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK"; readonly object: unknown }
  | { readonly type: "ERROR"; readonly code: number; readonly message: string };

/** The server said our resourceVersion is too old (HTTP 410 Gone): list again. */
export class GoneError extends Error {
  constructor(message: string) {
    super(`Watch resourceVersion expired (410 Gone): ${message}`);
    this.name = "GoneError";
  }
}

/**
 * The server does not serve the collection at all (HTTP 404 on a list or watch): for a
 * CustomResourceDefinition's collection, the CRD is not installed (or was removed).
 */
export class NotFoundError extends Error {
  constructor(path: string, message: string) {
    super(`GET ${path} answered 404 (the server does not serve it): ${message}`);
    this.name = "NotFoundError";
  }
}

/**
 * Parses one line of a watch stream; throws on anything that is not a watch event.
 *
 * @example
 * parseWatchEvent('{"type":"DELETED","object":{"kind":"Node","metadata":{"name":"n2"}}}');
 */
export function parseWatchEvent(line: string): WatchEvent {
  let data: unknown;
  try {
    data = JSON.parse(line);
  } catch {
    throw new Error(
      `Watch stream sent a line that is not JSON: ${JSON.stringify(line.slice(0, 80))}`,
    );
  }
  const ev = (typeof data === "object" && data !== null ? data : {}) as Record<string, unknown>;
  switch (ev.type) {
    case "ADDED":
    case "MODIFIED":
    case "DELETED":
    case "BOOKMARK":
      if (typeof ev.object !== "object" || ev.object === null) break;
      return { type: ev.type, object: ev.object };
    case "ERROR": {
      const status =
        (typeof ev.object === "object" && ev.object !== null ? ev.object : {}) as Record<
          string,
          unknown
        >;
      return {
        type: "ERROR",
        code: typeof status.code === "number" ? status.code : 0,
        message: typeof status.message === "string" ? status.message : "watch error",
      };
    }
  }
  throw new Error(
    `Watch stream sent an event without a known type and an object: ${line.slice(0, 80)}`,
  );
}

/**
 * Splits a byte stream into lines (chunk boundaries fall anywhere, even inside a character).
 * Empty lines are skipped.
 */
export async function* readLines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const text of body.pipeThrough(new TextDecoderStream())) {
    buf += text;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line !== "") yield line;
    }
  }
  if (buf.trim() !== "") yield buf.trim();
}
