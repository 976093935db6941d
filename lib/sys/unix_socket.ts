// A unix stream socket client through syscalls (lib/sys/syscall.ts), whose every wait is the
// kernel's: ppoll(2) with the time left before a deadline on the monotonic clock. The plugin's
// request to its agent (lib/plugin/admission.ts) must give up when its deadline passes, and a
// timer in Deno's event loop cannot promise that: Deno does its own work on the JS thread
// between turns of the loop (at the first turn after a module loads it stores the module's V8
// code cache in SQLite under DENO_DIR, where another deno process's lock makes it wait up to 5 s),
// and the timer fires only when that is over. Nothing here turns the loop.

import { bytes, closeFd, Errno, sys, SyscallError, sysOrErrno } from "./syscall.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
/** sendto(2): EPIPE rather than SIGPIPE when the peer has gone. */
const MSG_NOSIGNAL = 0x4000;
const POLLIN = 0x1;
const POLLOUT = 0x4;
/** sizeof(sun_path) in struct sockaddr_un. */
const SUN_PATH_MAX = 108;

/** The deadline passed before the socket was ready; `what` names the wait. */
export class DeadlineExceeded extends Error {
  constructor(readonly what: string) {
    super(`${what}: deadline exceeded`);
    this.name = "DeadlineExceeded";
  }
}

/**
 * A connected unix stream socket (non-blocking; each wait bounded by the caller's deadline, a
 * `performance.now()` value). Throws {@linkcode SyscallError} with errno when a call fails.
 *
 * @example
 * using s = UnixStream.connect("/run/mycni/agent.sock");
 * const deadline = performance.now() + 2000;
 * s.send(new TextEncoder().encode('{"version":1,"kind":"ping"}\n'), deadline);
 * const n = s.receive(buf, deadline); // 0 when the agent hung up
 */
export class UnixStream implements Disposable {
  #fd: number;
  // Buffers the kernel reads or writes, each in an ArrayBuffer of its own (syscall.ts says why).
  #in = bytes(4096);
  #pollfd = bytes(8);
  #timespec = bytes(16);

  private constructor(fd: number, readonly path: string) {
    this.#fd = fd;
  }

  /**
   * Connects to the socket at `path`. A unix connect does not wait: it succeeds, or fails at
   * once (ENOENT no such socket, ECONNREFUSED nobody listening, EACCES, EAGAIN when the
   * listener's backlog is full).
   */
  static connect(path: string): UnixStream {
    const encoded = new TextEncoder().encode(path);
    if (encoded.length >= SUN_PATH_MAX) {
      throw new Error(`Socket path ${path} is longer than ${SUN_PATH_MAX - 1} bytes`);
    }
    const fd = sys(
      "socket",
      `socket for ${path}`,
      AF_UNIX,
      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
      0,
    );
    const addr = bytes(2 + SUN_PATH_MAX);
    new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
    addr.set(encoded, 2);
    const ret = sysOrErrno("connect", `connect ${path}`, [fd, addr, 2 + encoded.length + 1]);
    if (ret < 0) {
      closeFd(fd);
      throw new SyscallError(`connect ${path}`, -ret);
    }
    return new UnixStream(fd, path);
  }

  /** Writes all of `data`, waiting for room until `deadline`; throws DeadlineExceeded then. */
  send(data: Uint8Array, deadline: number): void {
    const out = bytes(data.length);
    out.set(data);
    for (let at = 0; at < out.length;) {
      const rest = at === 0 ? out : out.slice(at);
      const n = sysOrErrno("sendto", `send to ${this.path}`, [
        this.#fd,
        rest,
        rest.length,
        MSG_NOSIGNAL,
        0,
        0,
      ]);
      if (n === -Errno.EAGAIN) this.#wait(POLLOUT, deadline, `send to ${this.path}`);
      else if (n < 0) throw new SyscallError(`send to ${this.path}`, -n);
      else at += n;
    }
  }

  /**
   * Reads what has arrived into `buf` (at most 4096 bytes), waiting for data until `deadline`;
   * returns the count, 0 when the peer has closed. Throws DeadlineExceeded when nothing came.
   */
  receive(buf: Uint8Array, deadline: number): number {
    const want = Math.min(buf.length, this.#in.length);
    for (;;) {
      const n = sysOrErrno("recvfrom", `receive from ${this.path}`, [
        this.#fd,
        this.#in,
        want,
        0,
        0,
        0,
      ]);
      if (n >= 0) {
        buf.set(this.#in.subarray(0, n));
        return n;
      }
      if (n !== -Errno.EAGAIN) throw new SyscallError(`receive from ${this.path}`, -n);
      this.#wait(POLLIN, deadline, `answer on ${this.path}`);
    }
  }

  /** Closes the socket; safe twice. */
  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** ppoll(2) for `events` with the time left; a signal's EINTR retries with what the kernel left. */
  #wait(events: number, deadline: number, what: string): void {
    const left = deadline - performance.now();
    if (left <= 0) throw new DeadlineExceeded(what);
    const p = new DataView(this.#pollfd.buffer);
    p.setInt32(0, this.#fd, true);
    p.setInt16(4, events, true);
    p.setInt16(6, 0, true);
    const t = new DataView(this.#timespec.buffer);
    const ms = Math.ceil(left);
    t.setBigInt64(0, BigInt(Math.floor(ms / 1000)), true);
    t.setBigInt64(8, BigInt((ms % 1000) * 1_000_000), true);
    // Ready (or POLLERR/POLLHUP, which the next call reports) or the time is up.
    if (sys("ppoll", `wait for ${what}`, this.#pollfd, 1, this.#timespec, 0, 8) === 0) {
      throw new DeadlineExceeded(what);
    }
  }
}
