// Built-in IPAM: the node's podCIDRs, state in <dataDir>/<network>/ (see store.ts).
import { CniError, ErrorCode } from "../cni/errors.ts";
import type { Attachment, NetConf } from "../cni/netconf.ts";
import type { Result } from "../cni/result.ts";
import { allocate, heldBy, poolOf, release } from "./allocator.ts";
import {
  cidrContains,
  formatIp,
  hostRange,
  type Ip,
  parseIp,
  parseIpWithPrefix,
} from "../ip/cidr.ts";
import type { Ipam } from "./ipam.ts";
import { DiskStore, type Owner, sameAttachment } from "./store.ts";

/** Built-in IPAM for one invocation; `owner` is the attachment, `requested` CNI_ARGS IP=. */
export function builtinIpam(conf: NetConf, owner: Owner, requested: readonly Ip[] = []): Ipam {
  const pools = conf.podCIDRs.map(poolOf);
  const open = () => openStore(conf);
  return {
    async add(): Promise<Result> {
      using store = open();
      const leases = await allocate(store, pools, owner, requested);
      return {
        ips: leases.map((l) => ({
          address: `${formatIp(l.ip)}/${l.pool.cidr.prefix}`,
          gateway: formatIp(l.pool.gateway),
        })),
        routes: leases.map((l) => ({
          dst: l.ip.family === 4 ? "0.0.0.0/0" : "::/0",
          gw: formatIp(l.pool.gateway),
        })),
      };
    },
    async del(): Promise<void> {
      using store = open();
      await release(store, owner);
    },
    async held(): Promise<string[]> {
      using store = open();
      return (await heldBy(store, owner)).map(formatIp);
    },
    async check(): Promise<void> {
      using store = open();
      const held = await heldBy(store, owner);
      const expected = (conf.prevResult?.ips ?? []).map((i) => parseIpWithPrefix(i.address).ip);
      for (const ip of expected) {
        if (!held.some((h) => h.value === ip.value)) {
          throw new CniError(
            ErrorCode.Internal,
            `IPAM has no reservation of ${
              formatIp(ip)
            } for container ${owner.containerId} ifname ${owner.ifname}`,
          );
        }
      }
      if (held.length === 0) {
        throw new CniError(
          ErrorCode.Internal,
          `IPAM has no address for container ${owner.containerId} ifname ${owner.ifname}`,
        );
      }
    },
    async gc(valid: readonly Attachment[]): Promise<Attachment[]> {
      using store = open();
      const keep = (o: Owner) =>
        valid.some((v) => sameAttachment(o, { containerId: v.containerID, ifname: v.ifname }));
      const released = new Map<string, Attachment>();
      for (const a of await store.list()) {
        // Legacy host-local records (no ifname) are kept while any attachment of the container is.
        const kept = a.owner.ifname === ""
          ? valid.some((v) => v.containerID === a.owner.containerId)
          : keep(a.owner);
        if (kept) continue;
        await store.release(a.ip, a.owner);
        released.set(`${a.owner.containerId}@${a.owner.ifname}`, {
          containerID: a.owner.containerId,
          ifname: a.owner.ifname,
        });
      }
      for (const o of await store.listAttachments()) {
        if (keep(o)) continue;
        await release(store, o);
        released.set(`${o.containerId}@${o.ifname}`, {
          containerID: o.containerId,
          ifname: o.ifname,
        });
      }
      await store.removeStaleTemps();
      return [...released.values()];
    },
    async status(): Promise<void> {
      let store: DiskStore;
      try {
        store = open();
      } catch (err) {
        throw new CniError(
          ErrorCode.NotAvailable,
          `IPAM state directory is not usable: ${(err as Error).message}`,
        );
      }
      using _ = store;
      const taken = (await store.list()).map((a) => parseIp(a.ip));
      for (const pool of pools) {
        const { first, last } = hostRange(pool.cidr);
        const capacity = last - first; // minus the gateway
        const used = BigInt(
          taken.filter((ip) => cidrContains(pool.cidr, ip) && ip.value !== pool.gateway.value)
            .length,
        );
        if (used >= capacity) {
          throw new CniError(
            ErrorCode.NotAvailable,
            `No free addresses in ${
              formatIp({ family: pool.cidr.family, value: pool.cidr.network })
            }/${pool.cidr.prefix}`,
            `${used} of ${capacity} allocated`,
          );
        }
      }
    },
  };
}

function openStore(conf: NetConf): DiskStore {
  try {
    return DiskStore.open(conf.dataDir, conf.name);
  } catch (err) {
    throw new CniError(
      ErrorCode.IoFailure,
      `Cannot open IPAM state in ${conf.dataDir}/${conf.name}: ${(err as Error).message}`,
    );
  }
}
