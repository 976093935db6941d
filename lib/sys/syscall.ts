// System calls Deno has no API for, made through its FFI to libc's syscall(2): a netlink socket
// and its sendto/recvfrom, and setns around the socket() call that places it in a pod's netns
// (lib/net/netlink.ts); and the plugin's file I/O (lib/net/file.ts says why).
//
// One FFI symbol for every call: Deno sets up each symbol at dlopen. And each symbol takes one
// more parameter than the C function, a one-byte struct that the callee never reads: with a
// struct among its parameters, Deno calls the symbol through libffi instead of compiling a
// fast-call trampoline with Cranelift at dlopen (Cranelift's set-up is ~1 ms of a plugin
// process, for calls that take microseconds either way), and the result stays a plain integer
// (a struct result would cost a wrapper compiled with `new Function` at dlopen and a buffer per
// call). The extra argument is harmless on both ABIs Deno ships for Linux: on x86_64 it lands
// in a register or stack slot the callee does not read, and the caller pops it; on arm64 it
// lands in a register the callee does not read (syscall(2) is variadic and reads the seven it
// is given; __errno_location reads none).
//
// Every argument is declared i64 and passed as a JS number, pointers included (user-space
// addresses fit in 53 bits on both ABIs): Deno's FFI takes a number for i64 (its "common case";
// the type declarations only say bigint). A BigInt per argument made a call ~20 us instead of ~6
// in a tight loop; on a whole ADD (~40 calls) the difference was below the noise, and numbers are
// simpler.

const PAD = { struct: ["u8"] } as const;
const SYMBOLS = {
  syscall: {
    parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64", PAD],
    result: "i64",
  },
  __errno_location: { parameters: [PAD], result: "pointer" },
} as const;

/** The value of every {@linkcode PAD} argument. */
const pad = new Uint8Array(1);

/** System call numbers: asm/unistd_64.h on x86_64, the generic table on arm64. */
const NR = {
  x86_64: {
    close: 3,
    socket: 41,
    sendto: 44,
    recvfrom: 45,
    setsockopt: 54,
    openat: 257,
    setns: 308,
    read: 0,
    write: 1,
    flock: 73,
    mkdirat: 258,
    newfstatat: 262,
    unlinkat: 263,
    renameat: 264,
    linkat: 265,
    ftruncate: 77,
  },
  aarch64: {
    close: 57,
    socket: 198,
    sendto: 206,
    recvfrom: 207,
    setsockopt: 208,
    openat: 56,
    setns: 268,
    read: 63,
    write: 64,
    flock: 32,
    mkdirat: 34,
    newfstatat: 79,
    unlinkat: 35,
    renameat: 38,
    linkat: 37,
    ftruncate: 46,
  },
} as const;

/** A system call this module knows the number of. */
export type Call = keyof typeof NR.x86_64;

/** errno values callers tell apart. */
export const Errno = {
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EEXIST: 17,
  ENODEV: 19,
} as const;

/** The "current directory" fd for the *at() calls. */
export const AT_FDCWD = -100;
/** openat(2) flag: closed on exec, so no spawned process inherits the fd (every fd we open). */
export const O_CLOEXEC = 0o2000000;

/** syscall(2) as called: numbers in (see above), a number or bigint out. */
type SyscallFn = (nr: number, ...rest: [...number[], Uint8Array]) => number | bigint;

let libc: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | undefined;

function symbols() {
  return libc ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
}

/** A failed system call: what we were doing, and errno. */
export class SyscallError extends Error {
  constructor(readonly what: string, readonly errno: number) {
    super(`${what}: ${errnoText(errno)}`);
    this.name = "SyscallError";
  }
}

/** An argument: a number, or bytes passed by address (see {@linkcode bytes}). */
export type Arg = number | Uint8Array<ArrayBuffer>;

/**
 * syscall(2): returns the result, or throws {@linkcode SyscallError} naming `what`. Retried
 * when a signal interrupts it (a blocking recvfrom can see EINTR). Byte arguments must sit in an
 * ArrayBuffer of their own so V8 never moves them while the kernel reads or writes them.
 */
export function sys(call: Call, what: string, ...args: Arg[]): number {
  const ret = sysOrErrno(call, what, args);
  if (ret < 0) throw new SyscallError(what, -ret);
  return ret;
}

/**
 * syscall(2) without the throw: the result, or minus errno, for callers to whom some errno is an
 * answer rather than a failure (ENOENT from a probe).
 *
 * @example
 * if (sysOrErrno("unlinkat", "unlink x", [AT_FDCWD, cString("x"), 0]) === -Errno.ENOENT) {}
 */
export function sysOrErrno(call: Call, what: string, args: readonly Arg[]): number {
  const table = NR[Deno.build.arch as keyof typeof NR];
  // Deno ships Linux builds for these two; anywhere else the numbers would be another call's.
  if (!table) throw new Error(`no system call numbers for ${Deno.build.arch} (${what})`);
  const nr = table[call];
  const w = [0, 1, 2, 3, 4, 5].map((i) => word(args[i]));
  const syscall = symbols().syscall as unknown as SyscallFn;
  for (;;) {
    const ret = Number(syscall(nr, w[0], w[1], w[2], w[3], w[4], w[5], pad));
    if (ret >= 0) return ret;
    const errno = lastErrno();
    if (errno !== Errno.EINTR || call === "close") return -errno;
  }
}

function word(arg: Arg | undefined): number {
  if (arg === undefined) return 0;
  if (typeof arg === "number") return arg;
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(arg)));
}

// errno's address is per thread; the JS thread's never changes, so it is asked for once.
let errnoView: Deno.UnsafePointerView | undefined;

function lastErrno(): number {
  if (!errnoView) {
    const p = symbols().__errno_location(pad);
    if (!p) return 0;
    errnoView = new Deno.UnsafePointerView(p);
  }
  return errnoView.getInt32();
}

/** `n` zero bytes in an ArrayBuffer of their own: V8 never moves it, so it can go by address. */
export function bytes(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(n));
}

/** `s` as a NUL-terminated C string. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const encoded = new TextEncoder().encode(s);
  const out = bytes(encoded.length + 1);
  out.set(encoded);
  return out;
}

/** close(2), a failure ignored: there is nothing to do about one. */
export function closeFd(fd: number): void {
  sysOrErrno("close", "close", [fd]);
}

/** strerror(errno) for the errors we meet, else the number. */
export function errnoText(errno: number): string {
  return ERRNO_TEXT[errno] ?? `errno ${errno}`;
}

// glibc's strerror() texts, which `ip` prints too ("RTNETLINK answers: File exists").
const ERRNO_TEXT: Record<number, string> = {
  1: "Operation not permitted",
  2: "No such file or directory",
  4: "Interrupted system call",
  5: "Input/output error",
  7: "Argument list too long",
  9: "Bad file descriptor",
  11: "Resource temporarily unavailable",
  12: "Cannot allocate memory",
  13: "Permission denied",
  16: "Device or resource busy",
  17: "File exists",
  18: "Invalid cross-device link",
  19: "No such device",
  20: "Not a directory",
  21: "Is a directory",
  22: "Invalid argument",
  23: "Too many open files in system",
  24: "Too many open files",
  28: "No space left on device",
  30: "Read-only file system",
  31: "Too many links",
  34: "Numerical result out of range",
  36: "File name too long",
  40: "Too many levels of symbolic links",
  61: "No data available",
  90: "Message too long",
  93: "Protocol not supported",
  95: "Operation not supported",
  97: "Address family not supported by protocol",
  99: "Cannot assign requested address",
  101: "Network is unreachable",
  105: "No buffer space available",
  122: "Disk quota exceeded",
};
