// The few libc calls the plugin makes itself, through Deno's FFI: a netlink socket opened inside
// a pod's network namespace (setns on this thread, socket, setns back). Spawning `nsenter ip`
// for the same work costs a fresh process per pod; these calls cost microseconds.

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let libc: Libc | undefined;

/** libc's symbols, loaded on first use (glibc's soname first, then the generic name). */
export function libcSymbols(): Libc {
  if (libc) return libc;
  const errors: string[] = [];
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      libc = Deno.dlopen(name, SYMBOLS).symbols;
      return libc;
    } catch (err) {
      errors.push(`${name}: ${(err as Error).message}`);
    }
  }
  throw new Error(`cannot load libc for netlink: ${errors.join("; ")}`);
}

/** A failed libc call: which call, on what, and errno's text. */
export class SyscallError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${errnoText(errno)}`);
    this.name = "SyscallError";
  }
}

/** errno of the last failed call on this thread (FFI calls run on the JS thread). */
export function lastErrno(): number {
  const p = libcSymbols().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** strerror(errno): "File exists", "No such device", ... */
export function errnoText(errno: number): string {
  const p = libcSymbols().strerror(errno);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${errno}`;
}

/** `call`'s return value, or a {@linkcode SyscallError} naming it when it is negative. */
export function check(call: string, ret: number | bigint): number {
  if (ret < 0) throw new SyscallError(call, lastErrno());
  return Number(ret);
}

/** A NUL-terminated copy of `s`, as C wants paths. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}
