// The MTU of the node's default-route interface, read from procfs of our own netns (no process
// spawned on the plugin's hot path; /sys/class/net would show the root netns, not ours).
import { Rtnl } from "./netlink.ts";
import { linkGet } from "./rtnl.ts";

const FALLBACK_MTU = 1500;

/** MTU of the IPv4 default-route interface, or 1500 when there is no default route. */
export async function defaultRouteMtu(): Promise<number> {
  const dev = await defaultRouteDevice();
  if (!dev) return FALLBACK_MTU;
  // The IPv6 MTU of a device follows its link MTU (addrconf resets it on NETDEV_CHANGEMTU).
  try {
    const mtu = Number((await Deno.readTextFile(`/proc/sys/net/ipv6/conf/${dev}/mtu`)).trim());
    if (Number.isInteger(mtu) && mtu >= 68) return mtu;
  } catch { /* IPv6 disabled on the device */ }
  using node = Rtnl.open();
  return linkGet(node, dev)?.mtu || FALLBACK_MTU;
}

async function defaultRouteDevice(): Promise<string | undefined> {
  const text = await Deno.readTextFile("/proc/net/route").catch(() => "");
  for (const line of text.split("\n").slice(1)) {
    const [iface, dst, , , , , , mask] = line.trim().split(/\s+/);
    if (dst === "00000000" && mask === "00000000") return iface;
  }
  return undefined;
}
