// One request and its one-line answer over a unix stream socket, by raw system calls that block:
// the plugin's exchange with the node agent (lib/plugin/admission.ts). A plugin process asks one
// question and waits for it, and Deno's async socket ops cost a fresh process more to set up
// than the whole exchange takes (~1.4 ms against ~0.1 ms here, bench/plugin_latency.ts); the
// FFI symbols are loaded for netlink already. Not for a process that also serves the socket: it
// would block the loop that answers.
import { bytes, closeFd, Errno, SyscallError, sysOrErrno } from "./syscall.ts";

const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1, SO_RCVTIMEO = 20, SO_SNDTIMEO = 21;
/** sun_path's size in struct sockaddr_un. */
const SUN_PATH = 108;

/** errno values of a failed exchange that callers tell apart. */
export const SocketErrno = {
  ...Errno,
  EACCES: 13,
  EAGAIN: 11,
  ECONNREFUSED: 111,
} as const;

/** A failed exchange: where it stopped, and errno (EAGAIN: the deadline passed). */
export class UnixSocketError extends SyscallError {
  constructor(what: string, errno: number, readonly stage: "connect" | "send" | "receive") {
    super(what, errno);
    this.name = "UnixSocketError";
  }
}

/**
 * Connects to the unix stream socket at `path`, sends `request` whole, and returns the answer up
 * to its first newline (without it), or undefined when the peer closed before one came or sent
 * more than `maxBytes` without one; all within `timeoutMs` (then EAGAIN). Throws
 * {@linkcode UnixSocketError}; `stage` "connect" means the peer never got the request.
 *
 * @example
 * exchangeLine("/run/mycni/agent.sock", new TextEncoder().encode('{"kind":"ping"}\n'), 2000, 16384);
 */
export function exchangeLine(
  path: string,
  request: Uint8Array,
  timeoutMs: number,
  maxBytes: number,
): string | undefined {
  const deadline = performance.now() + timeoutMs;
  const fd = call("connect", `socket(AF_UNIX) for ${path}`, [
    AF_UNIX,
    SOCK_STREAM | SOCK_CLOEXEC,
    0,
  ], "socket");
  try {
    // A connect to a listener whose backlog is full blocks for as long as SO_SNDTIMEO says.
    setTimeout(fd, SO_SNDTIMEO, deadline);
    const addr = sockaddr(path);
    call("connect", `connect ${path}`, [fd, addr, addr.length]);
    const out = bytes(request.length);
    out.set(request);
    for (let sent = 0; sent < out.length;) {
      setTimeout(fd, SO_SNDTIMEO, deadline);
      sent += call("send", `send to ${path}`, [fd, out.subarray(sent), out.length - sent, 0, 0, 0]);
    }
    const buf = bytes(maxBytes);
    for (let used = 0; used < maxBytes;) {
      setTimeout(fd, SO_RCVTIMEO, deadline);
      const n = call("receive", `receive from ${path}`, [
        fd,
        buf.subarray(used),
        maxBytes - used,
        0,
        0,
        0,
      ]);
      if (n === 0) return undefined;
      const end = buf.subarray(used, used + n).indexOf(0x0a);
      if (end >= 0) return new TextDecoder().decode(buf.subarray(0, used + end));
      used += n;
    }
    return undefined;
  } finally {
    closeFd(fd);
  }
}

/** One system call of the exchange; its errno, or EAGAIN past the deadline, as the error. */
function call(
  stage: UnixSocketError["stage"],
  what: string,
  args: readonly (number | Uint8Array<ArrayBuffer>)[],
  nr: "socket" | "connect" | "send" | "receive" = stage,
): number {
  const which = nr === "send" ? "sendto" : nr === "receive" ? "recvfrom" : nr;
  const ret = sysOrErrno(which, what, args);
  if (ret < 0) throw new UnixSocketError(what, -ret, stage);
  return ret;
}

/** SO_SNDTIMEO / SO_RCVTIMEO to what is left until `deadline` (EAGAIN when nothing is). */
function setTimeout(fd: number, option: number, deadline: number): void {
  const left = deadline - performance.now();
  if (left <= 0) {
    throw new UnixSocketError(
      "deadline passed",
      SocketErrno.EAGAIN,
      option === SO_SNDTIMEO ? "send" : "receive",
    );
  }
  const us = Math.ceil(left * 1000);
  const tv = bytes(16); // struct timeval: tv_sec, tv_usec (64-bit each on x86_64 and arm64)
  const view = new DataView(tv.buffer);
  view.setBigInt64(0, BigInt(Math.floor(us / 1e6)), true);
  view.setBigInt64(8, BigInt(us % 1e6), true);
  const ret = sysOrErrno("setsockopt", "setsockopt SO_*TIMEO", [fd, SOL_SOCKET, option, tv, 16]);
  if (ret < 0) throw new UnixSocketError("setsockopt SO_*TIMEO", -ret, "connect");
}

/** struct sockaddr_un for `path` (sun_family, then the NUL-terminated path). */
function sockaddr(path: string): Uint8Array<ArrayBuffer> {
  const name = new TextEncoder().encode(path);
  if (name.length >= SUN_PATH) {
    throw new UnixSocketError(`connect ${path}: longer than sun_path`, 36, "connect");
  }
  const addr = bytes(2 + SUN_PATH);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(name, 2);
  return addr.subarray(0, 2 + name.length + 1);
}
