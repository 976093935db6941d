// The agent's side of admission (DESIGN.md "Pod lifecycle"): serves the unix socket the plugin
// asks before an ADD returns (lib/plugin/admission_protocol.ts is the wire format). Every request
// is checked here (shape, and that an admit's addresses are this node's), handed to the handler
// once, and answered with what the handler said; a bad request changes nothing. Requests are
// served concurrently: a burst of 8 ADDs at once is what a node starting pods looks like.
import { dirname } from "node:path";
import { type Cidr, cidrContains, formatCidr, parseIp } from "../ip/cidr.ts";
import type { LogFields, Logger } from "../log/logger.ts";
import {
  ADMISSION_VERSION,
  type AdmissionAnswer,
  AdmissionProtocolError,
  type AdmissionRequest,
  type AdmitRequest,
  parseAdmissionRequest,
  readMessageLine,
  type ReleaseRequest,
  writeMessage,
} from "../plugin/admission_protocol.ts";

/** What the agent does for each request; a rejection's message is sent back as the reason. */
export interface AdmissionHandler {
  /**
   * Binds the addresses to the pod; resolves once the kernel enforces its policy, with fields for
   * the request's log line if it likes (how it was done).
   */
  admit(req: AdmitRequest): Promise<LogFields | void>;
  /** Unbinds the attachment's addresses; resolves once the kernel no longer holds them. */
  release(req: ReleaseRequest): Promise<LogFields | void>;
}

/** Where and how to serve. */
export interface AdmissionServerOptions {
  /** The socket's path (`--agent-socket`). */
  readonly path: string;
  readonly handler: AdmissionHandler;
  /** This node's podCIDRs, read per request: an admit with an address outside them is refused. */
  readonly podCIDRs: () => readonly Cidr[];
  /** Closes the socket (and removes its file) when aborted. */
  readonly signal: AbortSignal;
  readonly log?: Logger;
  /** A client that sends no whole request within this long is hung up on (default 10 s). */
  readonly readTimeoutMs?: number;
}

/** A socket being served. */
export interface AdmissionServer {
  readonly path: string;
  /** Settles when the signal has closed the socket and every request in flight is answered. */
  readonly closed: Promise<void>;
}

/**
 * Serves admissions on `opts.path`: makes the parent directory (mode 0700) if it is missing,
 * replaces a stale socket (refuses to when another process still answers on it, or when the path
 * is no socket), and restricts the socket to its owner (0600; the agent runs as root). Resolves
 * once the socket accepts connections, so a conflist naming it can be written right after.
 *
 * @example
 * const server = await serveAdmission({ path: "/run/mycni/agent.sock", handler,
 *   podCIDRs: () => node.podCIDRs, signal });
 */
export async function serveAdmission(opts: AdmissionServerOptions): Promise<AdmissionServer> {
  const { path } = opts;
  await ensurePrivateDir(dirname(path));
  await removeStaleSocket(path);
  // Owned by the agent's user (root in the DaemonSet): only it may connect, and the plugin,
  // which runtimes exec as root.
  const listener = Deno.listen({ transport: "unix", path });
  try {
    await Deno.chmod(path, 0o600);
  } catch (err) {
    listener.close();
    throw new Error(`Cannot restrict ${path} to its owner: ${(err as Error).message}`);
  }
  const inFlight = new Set<Promise<void>>();
  const onAbort = () => {
    try {
      listener.close();
    } catch { /* closed already */ }
  };
  opts.signal.addEventListener("abort", onAbort, { once: true });
  if (opts.signal.aborted) onAbort();
  const closed = (async () => {
    try {
      for await (const conn of listener) {
        const served = serveConn(conn, opts).finally(() => inFlight.delete(served));
        inFlight.add(served);
      }
    } catch (err) {
      if (!opts.signal.aborted) {
        opts.log?.error("admission socket failed", { path, error: String(err) });
      }
    } finally {
      opts.signal.removeEventListener("abort", onAbort);
      await Promise.allSettled([...inFlight]);
      // Deno removes the file when the listener closes; a leftover would only look stale.
      await Deno.remove(path).catch(() => {});
    }
  })();
  return { path, closed };
}

/** Reads one request, answers it, hangs up. Never throws. */
async function serveConn(conn: Deno.Conn, opts: AdmissionServerOptions): Promise<void> {
  const timeout = opts.readTimeoutMs ?? 10_000;
  const timer = setTimeout(() => closeQuietly(conn), timeout);
  let line: string | undefined;
  try {
    line = await readMessageLine(conn);
  } catch (err) {
    if (err instanceof AdmissionProtocolError) {
      clearTimeout(timer);
      await answer(conn, { version: ADMISSION_VERSION, ok: false, error: err.message });
      return;
    }
    line = undefined; // closed under us: the timer, or the client
  } finally {
    clearTimeout(timer);
  }
  if (line === undefined) {
    closeQuietly(conn); // the client went away, or sent nothing in time
    return;
  }
  await answer(conn, await decide(line, opts));
}

/** The answer to one request line: its shape checked, then the handler's word. */
async function decide(line: string, opts: AdmissionServerOptions): Promise<AdmissionAnswer> {
  let req: AdmissionRequest;
  try {
    req = parseAdmissionRequest(line);
    if (req.kind === "admit") checkAddresses(req.ips, opts.podCIDRs());
  } catch (err) {
    const error = (err as Error).message;
    opts.log?.warn("admission request refused", { error });
    return { version: ADMISSION_VERSION, ok: false, error };
  }
  if (req.kind === "ping") return { version: ADMISSION_VERSION, ok: true };
  const started = performance.now();
  const who = {
    containerId: req.containerId,
    ifname: req.ifname,
    pod: req.pod ? `${req.pod.namespace}/${req.pod.name}` : undefined,
    ...(req.kind === "admit" ? { ips: req.ips } : {}),
  };
  let how: LogFields | void;
  try {
    if (req.kind === "admit") how = await opts.handler.admit(req);
    else how = await opts.handler.release(req);
  } catch (err) {
    const error = (err as Error).message || String(err);
    opts.log?.warn(`${req.kind} failed`, { ...who, error });
    return { version: ADMISSION_VERSION, ok: false, error };
  }
  const ms = Math.round((performance.now() - started) * 10) / 10;
  opts.log?.info(req.kind === "admit" ? "pod admitted" : "pod released", { ...who, ms, ...how });
  return { version: ADMISSION_VERSION, ok: true };
}

/** Every address must be in one of this node's podCIDRs: nothing else is ours to bind. */
function checkAddresses(ips: readonly string[], podCIDRs: readonly Cidr[]): void {
  ips.forEach((text, i) => {
    const ip = parseIp(text);
    if (!podCIDRs.some((c) => cidrContains(c, ip))) {
      const ours = podCIDRs.map(formatCidr).join(", ") || "none known yet";
      throw new AdmissionProtocolError(
        `Invalid admission field "ips[${i}]": ${text} is not in this node's podCIDRs (${ours})`,
      );
    }
  });
}

async function answer(conn: Deno.Conn, message: AdmissionAnswer): Promise<void> {
  try {
    await writeMessage(conn, message);
  } catch { /* the plugin gave up waiting: it has undone its ADD */ }
  closeQuietly(conn);
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed already */ }
}

/** Creates `dir` (mode 0700) when missing; an existing directory keeps its mode and owner. */
async function ensurePrivateDir(dir: string): Promise<void> {
  try {
    if ((await Deno.stat(dir)).isDirectory) return;
    throw new Error(`Cannot serve admissions in ${dir}: not a directory`);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700); // the umask may have taken bits away; this adds none
}

/** Removes a socket left by an agent that died; refuses when the path is live or no socket. */
async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  if (!info.isSocket) {
    throw new Error(`Cannot serve admissions at ${path}: something that is not a socket is there`);
  }
  let live = false;
  try {
    (await Deno.connect({ transport: "unix", path })).close();
    live = true;
  } catch { /* refused: nobody listens, the file is stale */ }
  if (live) {
    throw new Error(`Cannot serve admissions at ${path}: another process answers on it`);
  }
  await Deno.remove(path);
}
