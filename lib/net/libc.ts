// The few system calls the plugin makes itself, through Deno's FFI: a netlink socket opened
// inside a pod's network namespace (setns on this thread, socket, setns back). Spawning
// `nsenter ip` for the same work costs a fresh process per pod; these calls cost microseconds.
//
// Everything goes through libc's syscall(2): Deno builds a trampoline for every FFI symbol
// (~0.3 ms each, paid on every ADD and DEL), so two symbols instead of one per call.

const SYMBOLS = {
  syscall: {
    parameters: ["i64", "usize", "usize", "usize", "usize", "usize", "usize"],
    result: "i64",
  },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** System call numbers (asm/unistd_64.h; the generic table for arm64). */
const NR = {
  x86_64: {
    close: 3,
    socket: 41,
    sendto: 44,
    recvfrom: 45,
    setsockopt: 54,
    openat: 257,
    setns: 308,
  },
  aarch64: {
    close: 57,
    socket: 198,
    sendto: 206,
    recvfrom: 207,
    setsockopt: 208,
    openat: 56,
    setns: 268,
  },
} as const;

type Call = keyof typeof NR.x86_64;

const AT_FDCWD = -100n;

let libc: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | undefined;

function symbols() {
  return libc ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
}

/** A failed system call: which call, on what, and errno's text. */
export class SyscallError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${errnoText(errno)}`);
    this.name = "SyscallError";
  }
}

/** An argument: a number, or bytes passed by address (kept alive by the caller for the call). */
type Arg = number | bigint | Uint8Array<ArrayBuffer>;

/**
 * syscall(2); returns the result, or throws {@linkcode SyscallError} naming `what` with errno.
 * Byte arguments must sit in their own ArrayBuffer (see {@linkcode bytes}) so their address is
 * stable.
 */
export function sys(call: Call, what: string, ...args: Arg[]): number {
  const nr = (NR[Deno.build.arch as keyof typeof NR] ?? NR.x86_64)[call];
  const a = [0, 1, 2, 3, 4, 5].map((i) => toWord(args[i]));
  const ret = Number(symbols().syscall(BigInt(nr), a[0], a[1], a[2], a[3], a[4], a[5]));
  if (ret < 0) throw new SyscallError(what, lastErrno());
  return ret;
}

function toWord(arg: Arg | undefined): bigint {
  if (arg === undefined) return 0n;
  if (arg instanceof Uint8Array) {
    return Deno.UnsafePointer.value(Deno.UnsafePointer.of(arg)) as bigint;
  }
  // Negative values (AT_FDCWD) as the two's-complement word the kernel reads.
  return BigInt.asUintN(64, BigInt(arg));
}

/** errno of the last failed call on this thread (FFI calls run on the JS thread). */
function lastErrno(): number {
  const p = symbols().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** `n` zero bytes in an ArrayBuffer of their own: V8 never moves it, so it can go by address. */
export function bytes(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(n));
}

/** openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC). */
export function openReadOnly(path: string, what: string): number {
  const encoded = new TextEncoder().encode(path);
  const cPath = bytes(encoded.length + 1);
  cPath.set(encoded);
  return sys("openat", what, AT_FDCWD, cPath, 0x80000);
}

/** strerror(errno) for the errors we meet, else the number. */
export function errnoText(errno: number): string {
  return ERRNO_TEXT[errno] ?? `errno ${errno}`;
}

// glibc's strerror() texts, which `ip` prints ("RTNETLINK answers: File exists").
const ERRNO_TEXT: Record<number, string> = {
  1: "Operation not permitted",
  2: "No such file or directory",
  9: "Bad file descriptor",
  12: "Cannot allocate memory",
  13: "Permission denied",
  16: "Device or resource busy",
  17: "File exists",
  19: "No such device",
  22: "Invalid argument",
  23: "Too many open files in system",
  24: "Too many open files",
  28: "No space left on device",
  34: "Numerical result out of range",
  61: "No data available",
  93: "Protocol not supported",
  95: "Operation not supported",
  97: "Address family not supported by protocol",
  99: "Cannot assign requested address",
  101: "Network is unreachable",
  105: "No buffer space available",
};
