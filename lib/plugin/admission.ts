// The plugin's side of admission (DESIGN.md "Pod lifecycle"): one request to the node agent on
// its unix socket, and the wait for its answer. ADD asks before it prints its result (no answer
// fails ADD with code 11), DEL tells (best effort), STATUS pings (no answer is code 50).
// No setTimeout anywhere here: in Deno that is the Node-compatible timer, whose first use loads
// ~20 more modules into every plugin process (lib/time/sleep.ts); the deadline is an
// AbortSignal.timeout, and Deno.connect on a unix socket loads nothing either
// (tests/integration/plugin_cache_test.ts counts).
import { CniError, ErrorCode } from "../cni/errors.ts";
import {
  ADMISSION_VERSION,
  AdmissionProtocolError,
  type AdmissionRequest,
  ADMIT_TIMEOUT_MS,
  parseAdmissionAnswer,
  PING_TIMEOUT_MS,
  type PodRef,
  readMessageLine,
  RELEASE_TIMEOUT_MS,
  writeMessage,
} from "./admission_protocol.ts";
import type { Request } from "./request.ts";
import type { UndoStack } from "./undo.ts";

/** Why the agent did not say yes; `delivered` is false when the request never reached it. */
export class AgentUnavailable extends Error {
  constructor(message: string, readonly delivered: boolean) {
    super(message);
    this.name = "AgentUnavailable";
  }
}

/**
 * Sends one request to the agent on `socket` and waits at most `timeoutMs` (connect included)
 * for its answer. Resolves when the agent answers ok; throws {@linkcode AgentUnavailable} saying
 * why not (no socket, refused, no answer in time, the agent's error, a bad answer).
 *
 * @example
 * await askAgent("/run/mycni/agent.sock", { version: 1, kind: "ping" }, 2000);
 */
export async function askAgent(
  socket: string,
  request: AdmissionRequest,
  timeoutMs: number,
): Promise<void> {
  const deadline = AbortSignal.timeout(timeoutMs);
  let conn: Deno.UnixConn | undefined;
  // Closing the connection is what ends a pending read when the deadline passes.
  const onDeadline = () => {
    try {
      conn?.close();
    } catch { /* already closed */ }
  };
  deadline.addEventListener("abort", onDeadline, { once: true });
  let delivered = false;
  let line: string;
  try {
    conn = await untilDeadline(connect(socket), deadline, timeoutMs);
    await writeMessage(conn, request);
    delivered = true;
    const read = await readMessageLine(conn);
    if (read === undefined) {
      throw new AgentUnavailable("the agent closed the connection without an answer", true);
    }
    line = read;
  } catch (err) {
    // Our own close at the deadline may surface as any error, or as the end of the stream.
    if (deadline.aborted) {
      throw new AgentUnavailable(`no answer within ${timeoutMs} ms`, delivered);
    }
    if (err instanceof AgentUnavailable) throw err;
    throw new AgentUnavailable((err as Error).message, delivered);
  } finally {
    deadline.removeEventListener("abort", onDeadline);
    onDeadline();
  }
  let answer;
  try {
    answer = parseAdmissionAnswer(line);
  } catch (err) {
    if (!(err instanceof AdmissionProtocolError)) throw err;
    throw new AgentUnavailable(`bad answer: ${err.message}`, true);
  }
  if (!answer.ok) throw new AgentUnavailable(`the agent refused: ${answer.error}`, true);
}

/**
 * ADD's last step before its result: the agent binds `ips` to the pod and answers once the
 * kernel enforces its policy. No answer (or a refusal) is CNI error 11 naming the socket; a
 * request that reached the agent is taken back (release) when ADD unwinds.
 *
 * @example
 * await admitPod(req, "/run/mycni/agent.sock", ["10.244.1.5"], undo);
 */
export async function admitPod(
  req: Request,
  socket: string,
  ips: readonly string[],
  undo: UndoStack,
): Promise<void> {
  try {
    await askAgent(socket, admitRequest(req, ips), ADMIT_TIMEOUT_MS);
  } catch (err) {
    if (!(err instanceof AgentUnavailable)) throw err;
    // The agent may have bound the addresses before it failed or we stopped waiting.
    if (err.delivered) undo.push("release at the agent", () => releaseAtAgent(req, socket));
    throw new CniError(
      ErrorCode.TryAgainLater,
      `The node agent at ${socket} did not admit the pod: ${err.message}`,
      "ADD undid its work: a pod never starts before its network policy is enforced",
    );
  }
}

/**
 * DEL's word to the agent: the attachment's addresses (`ips`, what IPAM holds for it) leave
 * every set and map, and their conntrack entries go. Best effort: never throws; returns
 * "released" or why not, for the log line.
 */
export async function releaseAtAgent(
  req: Request,
  socket: string,
  ips: readonly string[] = [],
): Promise<string> {
  try {
    await askAgent(socket, releaseRequest(req, ips), RELEASE_TIMEOUT_MS);
    return "released";
  } catch (err) {
    return (err as Error).message;
  }
}

/** STATUS: the agent answers a ping, or CNI error 50 naming the socket. */
export async function pingAgent(socket: string): Promise<void> {
  try {
    await askAgent(socket, { version: ADMISSION_VERSION, kind: "ping" }, PING_TIMEOUT_MS);
  } catch (err) {
    if (!(err instanceof AgentUnavailable)) throw err;
    throw new CniError(
      ErrorCode.NotAvailable,
      `The node agent at ${socket} does not answer: ${err.message}`,
      "ADD needs the agent to admit each pod (agentSocket)",
    );
  }
}

/** The pod named by CNI_ARGS, when it names both namespace and name. */
export function podRefOf(req: Request): PodRef | undefined {
  const namespace = req.env.args.get("K8S_POD_NAMESPACE"), name = req.env.args.get("K8S_POD_NAME");
  return namespace && name ? { namespace, name } : undefined;
}

/** The admit request for this ADD: the attachment, its pod, its canonical addresses. */
export function admitRequest(req: Request, ips: readonly string[]): AdmissionRequest {
  const pod = podRefOf(req);
  return {
    version: ADMISSION_VERSION,
    kind: "admit",
    containerId: req.env.containerId,
    ifname: req.env.ifname,
    ...(pod ? { pod } : {}),
    ips: [...ips],
  };
}

/** The release request for this DEL (or for an ADD that is undoing itself), with its `ips`. */
export function releaseRequest(req: Request, ips: readonly string[] = []): AdmissionRequest {
  const pod = podRefOf(req);
  return {
    version: ADMISSION_VERSION,
    kind: "release",
    containerId: req.env.containerId,
    ifname: req.env.ifname,
    ...(pod ? { pod } : {}),
    ...(ips.length > 0 ? { ips: [...ips] } : {}),
  };
}

async function connect(socket: string): Promise<Deno.UnixConn> {
  try {
    return await Deno.connect({ transport: "unix", path: socket });
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound
      ? "no such socket (is the agent running?)"
      : err instanceof Deno.errors.ConnectionRefused
      ? "connection refused (nothing is listening)"
      : err instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : `cannot connect: ${(err as Error).message}`;
    throw new AgentUnavailable(why, false);
  }
}

/** `p`, or a rejection once `deadline` aborts (a connect that resolves later is closed). */
function untilDeadline(
  p: Promise<Deno.UnixConn>,
  deadline: AbortSignal,
  timeoutMs: number,
): Promise<Deno.UnixConn> {
  if (deadline.aborted) return Promise.reject(new Error("deadline"));
  return new Promise((resolve, reject) => {
    const expired = () => {
      p.then((c) => c.close(), () => {});
      reject(new AgentUnavailable(`no connection within ${timeoutMs} ms`, false));
    };
    deadline.addEventListener("abort", expired, { once: true });
    p.then(resolve, reject).finally(() => deadline.removeEventListener("abort", expired));
  });
}
