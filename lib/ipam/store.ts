// Built-in IPAM state on disk, in host-local's layout so operators can read it:
//   <dataDir>/<network>/lock                 flock(2) held across every read-modify-write
//   <dataDir>/<network>/<ip>                 "<containerID>\r\n<ifname>[\r\n<namespace>/<pod>]"
//   <dataDir>/<network>/last_reserved_ip.<N> the last IP handed out from range N
//   <dataDir>/<network>/attachments/<containerID>@<ifname>   the IPs of one attachment
// The attachment index makes DEL and ADD-retry O(1) instead of host-local's directory scan; it
// is written before the IP files, so it always names a superset of what the attachment owns.
import { join } from "node:path";

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

/** What the allocator needs from storage; the caller holds the lock for a whole operation. */
export interface Store {
  /** Reserves `ip` for `owner`; false when it is already taken. */
  reserve(ip: string, owner: Owner): Promise<boolean>;
  /** Releases `ip` if `owner` holds it (another owner's address is left alone). */
  release(ip: string, owner: Owner): Promise<void>;
  /** Whether `ip` is taken. */
  isTaken(ip: string): Promise<boolean>;
  /** Every reservation. */
  list(): Promise<Allocation[]>;
  lastReserved(range: number): Promise<string | undefined>;
  setLastReserved(range: number, ip: string): Promise<void>;
  /** The IPs recorded for an attachment (may include some it never got; check with owns()). */
  attachmentIps(owner: Owner): Promise<string[]>;
  setAttachmentIps(owner: Owner, ips: readonly string[]): Promise<void>;
  /** Every attachment that has an index entry. */
  listAttachments(): Promise<Owner[]>;
  /** Whether `owner` holds `ip`. */
  owns(ip: string, owner: Owner): Promise<boolean>;
}

/** Same container and interface. */
export function sameAttachment(a: Owner, b: Owner): boolean {
  return a.containerId === b.containerId && a.ifname === b.ifname;
}

const ATTACHMENTS = "attachments";

/** The store for one network's directory; holds the directory's lock until disposed. */
export class DiskStore implements Store, AsyncDisposable {
  private constructor(readonly dir: string, private readonly lockFile: Deno.FsFile) {}

  /** Creates the directory if needed and takes its lock (waits for other plugin processes). */
  static async open(dataDir: string, network: string): Promise<DiskStore> {
    const dir = join(dataDir, network);
    await Deno.mkdir(join(dir, ATTACHMENTS), { recursive: true, mode: 0o755 });
    const lockFile = await Deno.open(join(dir, "lock"), {
      read: true,
      write: true,
      create: true,
      mode: 0o600,
    });
    // flock(2), like host-local's lock; the kernel drops it when a killed process dies.
    await lockFile.lock(true);
    return new DiskStore(dir, lockFile);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.lockFile.unlock().catch(() => {});
    this.lockFile.close();
  }

  async reserve(ip: string, owner: Owner): Promise<boolean> {
    // Write the record whole under a temp name, then link(2) it into place: link fails if the IP
    // file exists, so a reservation is exclusive and never visible half-written.
    const tmp = await this.writeTemp(formatOwner(owner));
    try {
      await Deno.link(tmp, join(this.dir, ipFileName(ip)));
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) return false;
      throw err;
    } finally {
      await Deno.remove(tmp).catch(() => {});
    }
  }

  async release(ip: string, owner: Owner): Promise<void> {
    if (await this.owns(ip, owner)) await removeIfExists(join(this.dir, ipFileName(ip)));
  }

  async isTaken(ip: string): Promise<boolean> {
    try {
      await Deno.lstat(join(this.dir, ipFileName(ip)));
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
  }

  async owns(ip: string, owner: Owner): Promise<boolean> {
    const text = await readIfExists(join(this.dir, ipFileName(ip)));
    if (text === undefined) return false;
    const held = parseOwner(text);
    // Files written by host-local before 0.4 hold only the container ID.
    return held.containerId === owner.containerId &&
      (held.ifname === "" || held.ifname === owner.ifname);
  }

  async list(): Promise<Allocation[]> {
    const out: Allocation[] = [];
    for await (const entry of Deno.readDir(this.dir)) {
      if (!entry.isFile || !isIpFileName(entry.name)) continue;
      const text = await readIfExists(join(this.dir, entry.name));
      if (text !== undefined) {
        out.push({ ip: entry.name.replaceAll("_", ":"), owner: parseOwner(text) });
      }
    }
    return out;
  }

  async lastReserved(range: number): Promise<string | undefined> {
    return (await readIfExists(join(this.dir, `last_reserved_ip.${range}`)))?.trim();
  }

  async setLastReserved(range: number, ip: string): Promise<void> {
    await this.writeAtomic(`last_reserved_ip.${range}`, ip);
  }

  async attachmentIps(owner: Owner): Promise<string[]> {
    const text = await readIfExists(join(this.dir, ATTACHMENTS, attachmentFileName(owner)));
    return text === undefined ? [] : text.split("\n").filter((l) => l !== "");
  }

  async setAttachmentIps(owner: Owner, ips: readonly string[]): Promise<void> {
    const name = join(ATTACHMENTS, attachmentFileName(owner));
    if (ips.length === 0) await removeIfExists(join(this.dir, name));
    else await this.writeAtomic(name, ips.join("\n") + "\n");
  }

  async listAttachments(): Promise<Owner[]> {
    const out: Owner[] = [];
    for await (const entry of Deno.readDir(join(this.dir, ATTACHMENTS))) {
      const at = entry.name.indexOf("@");
      if (entry.isFile && at > 0) {
        out.push({ containerId: entry.name.slice(0, at), ifname: entry.name.slice(at + 1) });
      }
    }
    return out;
  }

  /** Removes temp files left by processes killed mid-write. */
  async removeStaleTemps(): Promise<number> {
    let n = 0;
    for (const sub of [this.dir, join(this.dir, ATTACHMENTS)]) {
      for await (const entry of Deno.readDir(sub)) {
        if (entry.name.startsWith(".tmp.")) {
          n += await removeIfExists(join(sub, entry.name)) ? 1 : 0;
        }
      }
    }
    return n;
  }

  private async writeTemp(content: string): Promise<string> {
    const tmp = join(this.dir, `.tmp.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}`);
    await Deno.writeTextFile(tmp, content, { mode: 0o600 });
    return tmp;
  }

  private async writeAtomic(name: string, content: string): Promise<void> {
    const tmp = await this.writeTemp(content);
    await Deno.rename(tmp, join(this.dir, name));
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

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

async function removeIfExists(path: string): Promise<boolean> {
  try {
    await Deno.remove(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
