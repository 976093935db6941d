// An in-memory Store (lib/ipam/store.ts) for allocator tests: the same contract as DiskStore
// (exclusive reserve, owner-checked release, the attachment index) without files or locks.
import { type Allocation, type Owner, sameAttachment, type Store } from "../../lib/ipam/store.ts";

/** A Store held in maps; `reservations` and `lastReservedAt` are open for assertions. */
export class MemoryStore implements Store {
  readonly reservations = new Map<string, Owner>();
  readonly lastReservedAt = new Map<number, string>();
  private readonly index = new Map<string, { owner: Owner; ips: string[] }>();

  reserve(ip: string, owner: Owner): Promise<boolean> {
    if (this.reservations.has(ip)) return Promise.resolve(false);
    this.reservations.set(ip, owner);
    return Promise.resolve(true);
  }

  async release(ip: string, owner: Owner): Promise<void> {
    if (await this.owns(ip, owner)) this.reservations.delete(ip);
  }

  isTaken(ip: string): Promise<boolean> {
    return Promise.resolve(this.reservations.has(ip));
  }

  list(): Promise<Allocation[]> {
    return Promise.resolve([...this.reservations].map(([ip, owner]) => ({ ip, owner })));
  }

  lastReserved(range: number): Promise<string | undefined> {
    return Promise.resolve(this.lastReservedAt.get(range));
  }

  setLastReserved(range: number, ip: string): Promise<void> {
    this.lastReservedAt.set(range, ip);
    return Promise.resolve();
  }

  attachmentIps(owner: Owner): Promise<string[]> {
    return Promise.resolve([...this.index.get(key(owner))?.ips ?? []]);
  }

  setAttachmentIps(owner: Owner, ips: readonly string[]): Promise<void> {
    if (ips.length === 0) this.index.delete(key(owner));
    else this.index.set(key(owner), { owner, ips: [...ips] });
    return Promise.resolve();
  }

  listAttachments(): Promise<Owner[]> {
    return Promise.resolve([...this.index.values()].map((e) => e.owner));
  }

  owns(ip: string, owner: Owner): Promise<boolean> {
    const held = this.reservations.get(ip);
    return Promise.resolve(held !== undefined && sameAttachment(held, owner));
  }
}

function key(owner: Owner): string {
  return `${owner.containerId}@${owner.ifname}`;
}
