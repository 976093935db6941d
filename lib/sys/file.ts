// The plugin's file I/O (IPAM state, the log line, namespace checks), over the FFI syscall the
// plugin loads for netlink anyway (lib/sys/syscall.ts) rather than Deno's file API. A plugin
// process lives ~30 ms, and Deno's API costs it more than the work: each part of it is set up
// on first use in a process (the file functions ~1 ms together on an ADD), a missing file is an
// exception (the first exception of a process costs ~1 ms), and stat() builds four Date objects
// (V8's date set-up, ~0.5 ms). Here a missing file is an answer, not an exception, and every
// other failure throws SyscallError naming the call, the path and errno's text.
import {
  AT_FDCWD,
  bytes,
  closeFd,
  cString,
  Errno,
  O_CLOEXEC,
  sys,
  SyscallError,
  sysOrErrno,
} from "./syscall.ts";

const O_RDONLY = 0, O_WRONLY = 0o1, O_RDWR = 0o2;
const O_CREAT = 0o100, O_EXCL = 0o200, O_APPEND = 0o2000;
const AT_SYMLINK_NOFOLLOW = 0x100;
const LOCK_EX = 2, LOCK_UN = 8;

/** A file's identity: the device it is on and its inode (stat's st_dev and st_ino). */
export interface FileId {
  readonly dev: bigint;
  readonly ino: bigint;
}

/**
 * stat(2) of `path` (lstat(2) with `{ follow: false }`) reduced to its identity; undefined when
 * there is no such file.
 *
 * @example
 * const own = fileId("/proc/self/ns/net"); // the nsfs inode of our network namespace
 */
export function fileId(path: string, opts: { follow?: boolean } = {}): FileId | undefined {
  // struct stat starts with st_dev and st_ino, 8 bytes each, on x86_64 and on arm64.
  const st = bytes(256);
  const flags = opts.follow === false ? AT_SYMLINK_NOFOLLOW : 0;
  const ret = sysOrErrno("newfstatat", `stat ${path}`, [AT_FDCWD, cString(path), st, flags]);
  if (ret === -Errno.ENOENT) return undefined;
  if (ret < 0) throw new SyscallError(`stat ${path}`, -ret);
  const v = new DataView(st.buffer);
  return { dev: v.getBigUint64(0, true), ino: v.getBigUint64(8, true) };
}

/** Whether `path` exists (not following a final symlink, as lstat). */
export function pathExists(path: string): boolean {
  return fileId(path, { follow: false }) !== undefined;
}

/**
 * The whole file as UTF-8 text; undefined when there is no such file.
 *
 * @example
 * readTextIfExists("/var/lib/cni/networks/mycni/last_reserved_ip.0"); // "10.244.1.7" or undefined
 */
export function readTextIfExists(path: string): string | undefined {
  const fd = open(path, O_RDONLY);
  if (fd === undefined) return undefined;
  try {
    return new TextDecoder().decode(readAll(fd, path));
  } finally {
    closeFd(fd);
  }
}

/** Everything `fd` has left to read. */
export function readAll(fd: number, what: string): Uint8Array {
  let buf = bytes(4096), len = 0;
  for (;;) {
    if (len === buf.length) {
      const bigger = bytes(buf.length * 2);
      bigger.set(buf);
      buf = bigger;
    }
    const n = sys("read", `read ${what}`, fd, buf.subarray(len), buf.length - len);
    if (n === 0) return buf.subarray(0, len);
    len += n;
  }
}

/**
 * Writes `text` to `path`, created with `mode` when missing: replacing what was there (not
 * atomically: a crash can leave a mix; rename a temp file over it for that), appended with
 * `append`, or only if the file is new with `exclusive` (false if it existed). A parent
 * directory that is missing throws SyscallError with errno ENOENT.
 *
 * @example
 * writeTextFile("/var/log/mycni.log", line, { append: true });
 */
export function writeTextFile(
  path: string,
  text: string,
  opts: { mode?: number; append?: boolean; exclusive?: boolean } = {},
): boolean {
  // Replacing: no O_TRUNC, but the new text written over the old and the file cut to its
  // length. ext4 treats a truncation to zero followed by a write as "replace this file" and
  // flushes it on close (auto_da_alloc): ~0.7 ms of disk I/O in every ADD, which rewrites
  // last_reserved_ip. Cut to a non-zero length, the data goes out with normal writeback.
  const how = opts.append ? O_APPEND : opts.exclusive ? O_EXCL : 0;
  const fd = sysOrErrno("openat", `open ${path}`, [
    AT_FDCWD,
    cString(path),
    O_WRONLY | O_CREAT | O_CLOEXEC | how,
    opts.mode ?? 0o644,
  ]);
  if (fd === -Errno.EEXIST && opts.exclusive) return false;
  if (fd < 0) throw new SyscallError(`open ${path}`, -fd);
  try {
    const encoded = new TextEncoder().encode(text);
    const data = bytes(encoded.length);
    data.set(encoded);
    for (let at = 0; at < data.length;) {
      at += sys("write", `write ${path}`, fd, data.subarray(at), data.length - at);
    }
    if (!opts.append) sys("ftruncate", `truncate ${path}`, fd, data.length);
    return true;
  } finally {
    closeFd(fd);
  }
}

/** rename(2): `to` is replaced atomically. */
export function renameFile(from: string, to: string): void {
  sys("renameat", `rename ${from} to ${to}`, AT_FDCWD, cString(from), AT_FDCWD, cString(to));
}

/** link(2): `path` becomes another name of `existing`; false when `path` already exists. */
export function linkFile(existing: string, path: string): boolean {
  const what = `link ${existing} to ${path}`;
  const ret = sysOrErrno("linkat", what, [AT_FDCWD, cString(existing), AT_FDCWD, cString(path), 0]);
  if (ret === -Errno.EEXIST) return false;
  if (ret < 0) throw new SyscallError(what, -ret);
  return true;
}

/** unlink(2); false when there was no such file. */
export function removeFile(path: string): boolean {
  const ret = sysOrErrno("unlinkat", `remove ${path}`, [AT_FDCWD, cString(path), 0]);
  if (ret === -Errno.ENOENT) return false;
  if (ret < 0) throw new SyscallError(`remove ${path}`, -ret);
  return true;
}

/** `mkdir -p`: `path` and any missing parent, each made with `mode`. */
export function makeDirs(path: string, mode = 0o755): void {
  const ret = sysOrErrno("mkdirat", `mkdir ${path}`, [AT_FDCWD, cString(path), mode]);
  if (ret >= 0 || ret === -Errno.EEXIST) return;
  const parent = path.slice(0, path.lastIndexOf("/"));
  if (ret !== -Errno.ENOENT || parent === "" || parent === path) {
    throw new SyscallError(`mkdir ${path}`, -ret);
  }
  makeDirs(parent, mode);
  makeDirs(path, mode);
}

/**
 * flock(2) on `path` (created with mode 0600 if missing), held until disposed; the kernel drops
 * it when the process dies. Waits for another holder. Undefined when the directory is missing.
 */
export function lockFile(path: string): (Disposable & { readonly fd: number }) | undefined {
  const fd = open(path, O_RDWR | O_CREAT, 0o600);
  if (fd === undefined) return undefined;
  try {
    sys("flock", `lock ${path}`, fd, LOCK_EX);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  return {
    fd,
    [Symbol.dispose]() {
      // Closing the last fd of the open file releases the lock; unlock first all the same, so
      // a waiter is not held up by a close that is slow to finish.
      sysOrErrno("flock", `unlock ${path}`, [fd, LOCK_UN]);
      closeFd(fd);
    },
  };
}

/** openat(2) with O_CLOEXEC; undefined for ENOENT. */
function open(path: string, flags: number, mode = 0): number | undefined {
  const fd = sysOrErrno("openat", `open ${path}`, [
    AT_FDCWD,
    cString(path),
    flags | O_CLOEXEC,
    mode,
  ]);
  if (fd === -Errno.ENOENT) return undefined;
  if (fd < 0) throw new SyscallError(`open ${path}`, -fd);
  return fd;
}
