// The plugin's side of admission (DESIGN.md "Pod lifecycle"): one request to the node agent on
// its unix socket, and the wait for its answer. ADD asks before it prints its result (no answer
// fails ADD with code 11), DEL tells (best effort), STATUS pings (no answer is code 50).
// Synchronous, through syscalls (lib/sys/unix_socket.ts): the wait is ppoll(2)'s in the kernel,
// so the deadline holds whatever Deno does on the JS thread (a timer in its event loop fired
// only after a 5 s SQLite wait for the V8 code cache, and the request, queued behind it, was
// never written); and no setTimeout (the Node-compatible timer loads ~20 more modules into
// every plugin process, lib/time/sleep.ts). tests/integration/plugin_admission_test.ts counts.
import { CniError, ErrorCode } from "../cni/errors.ts";
import { DeadlineExceeded, UnixStream } from "../sys/unix_socket.ts";
import { Errno, errnoText, SyscallError } from "../sys/syscall.ts";
import {
  ADMISSION_VERSION,
  AdmissionProtocolError,
  type AdmissionRequest,
  ADMIT_TIMEOUT_MS,
  formatMessage,
  parseAdmissionAnswer,
  PING_TIMEOUT_MS,
  type PodRef,
  readMessageLineSync,
  RELEASE_TIMEOUT_MS,
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
 * for its answer, blocking the JS thread meanwhile. Returns when the agent answers ok; throws
 * {@linkcode AgentUnavailable} saying why not (no socket, refused, no answer in time, the agent's
 * error, a bad answer).
 *
 * @example
 * askAgent("/run/mycni/agent.sock", { version: 1, kind: "ping" }, 2000);
 */
export function askAgent(socket: string, request: AdmissionRequest, timeoutMs: number): void {
  const deadline = performance.now() + timeoutMs;
  let stream: UnixStream;
  try {
    stream = UnixStream.connect(socket);
  } catch (err) {
    throw new AgentUnavailable(connectFailure(err), false);
  }
  let delivered = false;
  let line: string | undefined;
  try {
    stream.send(encoder.encode(formatMessage(request)), deadline);
    delivered = true;
    line = readMessageLineSync((into) => stream.receive(into, deadline));
  } catch (err) {
    if (err instanceof DeadlineExceeded) {
      throw new AgentUnavailable(`no answer within ${timeoutMs} ms`, delivered);
    }
    const why = err instanceof SyscallError ? errnoText(err.errno) : (err as Error).message;
    throw new AgentUnavailable(why, delivered);
  } finally {
    stream.close();
  }
  if (line === undefined) {
    throw new AgentUnavailable("the agent closed the connection without an answer", true);
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
 * admitPod(req, "/run/mycni/agent.sock", ["10.244.1.5"], undo);
 */
export function admitPod(
  req: Request,
  socket: string,
  ips: readonly string[],
  undo: UndoStack,
): void {
  try {
    askAgent(socket, admitRequest(req, ips), ADMIT_TIMEOUT_MS);
  } catch (err) {
    if (!(err instanceof AgentUnavailable)) throw err;
    // The agent may have bound the addresses before it failed or we stopped waiting.
    if (err.delivered) {
      undo.push("release at the agent", () => {
        req.log.agent = releaseAtAgent(req, socket);
      });
    }
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
export function releaseAtAgent(req: Request, socket: string, ips: readonly string[] = []): string {
  try {
    askAgent(socket, releaseRequest(req, ips), RELEASE_TIMEOUT_MS);
    return "released";
  } catch (err) {
    return (err as Error).message;
  }
}

/** STATUS: the agent answers a ping, or CNI error 50 naming the socket. */
export function pingAgent(socket: string): void {
  try {
    askAgent(socket, { version: ADMISSION_VERSION, kind: "ping" }, PING_TIMEOUT_MS);
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

/** The release request for this DEL (or for an ADD that is undoing itself). */
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

const encoder = new TextEncoder();

function connectFailure(err: unknown): string {
  if (!(err instanceof SyscallError)) return `cannot connect: ${(err as Error).message}`;
  switch (err.errno) {
    case Errno.ENOENT:
      return "no such socket (is the agent running?)";
    case Errno.ECONNREFUSED:
      return "connection refused (nothing is listening)";
    case Errno.EACCES:
      return "permission denied";
    default:
      return `cannot connect: ${errnoText(err.errno)}`;
  }
}
