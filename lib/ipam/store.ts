// Built-in IPAM state on disk, in host-local's layout so operators can read it:
//   <dataDir>/<network>/lock                 flock(2) held across every read-modify-write
//   <dataDir>/<network>/<ip>                 "<containerID>\r\n<ifname>[\r\n<namespace>/<pod>]"
//   <dataDir>/<network>/last_reserved_ip.<N> the last IP handed out from range N
//   <dataDir>/<network>/attachments/<containerID>@<ifname>   the IPs of one attachment
// The attachment index makes DEL and ADD-retry O(1) instead of host-local's directory scan; it
// is written before the IP files, so it always names a superset of what the attachment owns.
// (No node:path here: a node: import costs the plugin tens of ms of start-up on every ADD.)
// Files are read and written through lib/net/file.ts, not Deno's file API, which costs a
// plugin process more to set up than the handful of system calls an ADD makes (file.ts says
// how much); a missing file is an answer there, not an exception. Listing a directory (GC,
// STATUS) stays with Deno.readDirSync.
import {
  linkFile,
  lockFile,
  makeDirs,
  pathExists,
  readTextIfExists,
  removeFile,
  renameFile,
  writeTextFile,
} from "../sys/file.ts";
import { Errno, SyscallError } from "../sys/syscall.ts";

/** Who holds an address. */
export interface Owner {
  readonly containerId: string;
  readonly ifname: string;
  /** "namespace/name" from CNI_ARGS, when the runtime sent it. */
  readonly pod?: string;
}

/** One reserved address. */
export interface Allocation {
  readonly ip: string;
  readonly owner: Owner;
}

/** A value, or a promise of one: the disk store answers synchronously, a fake may not. */
export type Awaitable<T> = T | Promise<T>;

/**
 * What the allocator needs from storage; the caller holds the lock for a whole operation.
 */
export interface Store {
  /** Reserves `ip` for `owner`; false when it is already taken. */
  reserve(ip: string, owner: Owner): Awaitable<boolean>;
  /** Releases `ip` if `owner` holds it (another owner's address is left alone). */
  release(ip: string, owner: Owner): Awaitable<void>;
  /** Whether `ip` is taken. */
  isTaken(ip: string): Awaitable<boolean>;
  /** Every reservation. */
  list(): Awaitable<Allocation[]>;
  lastReserved(range: number): Awaitable<string | undefined>;
  setLastReserved(range: number, ip: string): Awaitable<void>;
  /** The IPs recorded for an attachment (may include some it never got; check with owns()). */
  attachmentIps(owner: Owner): Awaitable<string[]>;
  setAttachmentIps(owner: Owner, ips: readonly string[]): Awaitable<void>;
  /** Every attachment that has an index entry. */
  listAttachments(): Awaitable<Owner[]>;
  /** Whether `owner` holds `ip`. */
  owns(ip: string, owner: Owner): Awaitable<boolean>;
}

/** Same container and interface. */
export function sameAttachment(a: Owner, b: Owner): boolean {
  return a.containerId === b.containerId && a.ifname === b.ifname;
}

const ATTACHMENTS = "attachments";
let tempCounter = 0;

/** The store for one network's directory; holds the directory's lock until disposed. */
export class DiskStore implements Store, Disposable {
  private constructor(readonly dir: string, private readonly lock: Disposable) {}

  /** Creates the directory if needed and takes its lock (waits for other plugin processes). */
  static open(dataDir: string, network: string): DiskStore {
    const dir = join(dataDir, network);
    // flock(2), like host-local's lock; the kernel drops it when a killed process dies.
    let lock = lockFile(join(dir, "lock"));
    if (!lock) {
      // First use on this node: make the directory (host-local's mode) and try again.
      makeDirs(join(dir, ATTACHMENTS), 0o755);
      lock = lockFile(join(dir, "lock"));
    }
    if (!lock) throw new Error(`${dir} vanished while it was being set up`);
    return new DiskStore(dir, lock);
  }

  [Symbol.dispose](): void {
    this.lock[Symbol.dispose]();
  }

  reserve(ip: string, owner: Owner): boolean {
    // Write the record whole under a temp name, then link(2) it into place: link fails if the IP
    // file exists, so a reservation is exclusive and never visible half-written.
    const tmp = this.writeTemp(formatOwner(owner));
    try {
      return linkFile(tmp, join(this.dir, ipFileName(ip)));
    } finally {
      removeFile(tmp);
    }
  }

  release(ip: string, owner: Owner): void {
    if (this.owns(ip, owner)) removeFile(join(this.dir, ipFileName(ip)));
  }

  isTaken(ip: string): boolean {
    return pathExists(join(this.dir, ipFileName(ip)));
  }

  owns(ip: string, owner: Owner): boolean {
    const text = readTextIfExists(join(this.dir, ipFileName(ip)));
    if (text === undefined) return false;
    const held = parseOwner(text);
    // Files written by host-local before 0.4 hold only the container ID.
    return held.containerId === owner.containerId &&
      (held.ifname === "" || held.ifname === owner.ifname);
  }

  list(): Allocation[] {
    const out: Allocation[] = [];
    for (const entry of Deno.readDirSync(this.dir)) {
      if (!entry.isFile || !isIpFileName(entry.name)) continue;
      const text = readTextIfExists(join(this.dir, entry.name));
      if (text !== undefined) {
        out.push({ ip: entry.name.replaceAll("_", ":"), owner: parseOwner(text) });
      }
    }
    return out;
  }

  lastReserved(range: number): string | undefined {
    return (readTextIfExists(join(this.dir, `last_reserved_ip.${range}`)))?.trim();
  }

  setLastReserved(range: number, ip: string): void {
    // In place, as host-local writes it: a torn write only moves the round-robin start.
    writeTextFile(join(this.dir, `last_reserved_ip.${range}`), ip, { mode: 0o600 });
  }

  attachmentIps(owner: Owner): string[] {
    const text = readTextIfExists(join(this.dir, ATTACHMENTS, attachmentFileName(owner)));
    return text === undefined ? [] : text.split("\n").filter((l) => l !== "");
  }

  setAttachmentIps(owner: Owner, ips: readonly string[]): void {
    const name = join(ATTACHMENTS, attachmentFileName(owner));
    // A repeated DEL finds no index: asked first, so that is not an exception either.
    if (ips.length === 0) removeFile(join(this.dir, name));
    else this.writeAtomic(name, ips.join("\n") + "\n");
  }

  listAttachments(): Owner[] {
    const out: Owner[] = [];
    for (const entry of readDirIfExists(join(this.dir, ATTACHMENTS))) {
      const at = entry.name.indexOf("@");
      if (entry.isFile && at > 0) {
        out.push({ containerId: entry.name.slice(0, at), ifname: entry.name.slice(at + 1) });
      }
    }
    return out;
  }

  /** Removes temp files left by processes killed mid-write. */
  removeStaleTemps(): number {
    let n = 0;
    for (const sub of [this.dir, join(this.dir, ATTACHMENTS)]) {
      for (const entry of readDirIfExists(sub)) {
        if (entry.name.startsWith(".tmp.")) {
          n += removeFile(join(sub, entry.name)) ? 1 : 0;
        }
      }
    }
    return n;
  }

  private writeTemp(content: string): string {
    // Unique without crypto (loading it costs the plugin start-up): our pid, and a counter.
    const tmp = join(this.dir, `.tmp.${Deno.pid}.${tempCounter++}`);
    writeTextFile(tmp, content, { mode: 0o600 });
    return tmp;
  }

  private writeAtomic(name: string, content: string): void {
    const tmp = this.writeTemp(content);
    try {
      renameFile(tmp, join(this.dir, name));
    } catch (err) {
      // A directory host-local made has no attachments/ yet.
      if (!(err instanceof SyscallError && err.errno === Errno.ENOENT)) throw err;
      makeDirs(join(this.dir, ATTACHMENTS), 0o755);
      renameFile(tmp, join(this.dir, name));
    }
  }
}

/** host-local's record: "<containerID>\r\n<ifname>", plus our pod line. */
export function formatOwner(owner: Owner): string {
  return [owner.containerId, owner.ifname, ...(owner.pod ? [owner.pod] : [])].join("\r\n");
}

/** Reads a record written by us or by host-local (old versions wrote only the container ID). */
export function parseOwner(text: string): Owner {
  const [containerId = "", ifname = "", pod] = text.trim().split("\r\n");
  return pod ? { containerId, ifname, pod } : { containerId, ifname };
}

// host-local names files by net.IP.String(); Windows swaps ':' for '_', read both.
function ipFileName(ip: string): string {
  return ip;
}

function isIpFileName(name: string): boolean {
  return /^[0-9.]+$/.test(name)
    ? name.split(".").length === 4
    : /^[0-9a-f:_]+$/.test(name) && /[:_]/.test(name);
}

function attachmentFileName(owner: Owner): string {
  // Container IDs cannot contain "@" (validated), so the split is unambiguous.
  return `${owner.containerId}@${owner.ifname}`;
}

function join(...parts: string[]): string {
  return parts.join("/");
}

function readDirIfExists(path: string): Deno.DirEntry[] {
  try {
    return [...Deno.readDirSync(path)];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}
