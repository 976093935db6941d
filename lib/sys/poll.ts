// Waiting for an fd Deno does not own (a netlink socket made through lib/sys/syscall.ts) without
// blocking the event loop: poll(2) through an FFI symbol declared `nonblocking`, which Deno runs
// on a thread of its blocking pool and answers with a Promise. Only the wait happens there; the
// read itself stays a MSG_DONTWAIT recvfrom on the JS thread, where lib/sys/syscall.ts reads
// errno (errno is per thread: a recvfrom on the pool thread could not tell EAGAIN from ENOBUFS).
//
// A library handle of its own, opened on first use: syscall.ts's one-symbol rule keeps the
// plugin's dlopen cheap, and the plugin never waits on a socket, so it never pays for this one.

const SYMBOLS = {
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
} as const;

const POLLIN = 0x1;

let libc: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | undefined;

/**
 * Resolves true once `fd` has something to read (or an error to report, which the read then
 * returns), false after `timeoutMs` with nothing. The bounded wait is what lets an owner close
 * the fd: a wait in progress returns within `timeoutMs` and sees that it should stop.
 *
 * @example
 * while (!signal.aborted) if (await waitReadable(fd, 250)) drain(fd);
 */
export async function waitReadable(fd: number, timeoutMs: number): Promise<boolean> {
  libc ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  // struct pollfd { int fd; short events; short revents; }, in a buffer the call keeps alive.
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, POLLIN, true);
  const n = await libc.poll(pfd, 1n, Math.max(0, Math.round(timeoutMs)));
  // -1 is EINTR (a signal reached the pool thread) or ENOMEM: either way, look again.
  return n > 0 && v.getInt16(6, true) !== 0;
}
