// Kernel settings under /proc/sys/net. Those files answer for the network namespace of the
// process that opens them, so the agent (run inside the node's netns) sets the node's values.

/** net.ipv4.ip_forward */
export const IPV4_FORWARD = "net/ipv4/ip_forward";
/** net.ipv6.conf.all.forwarding */
export const IPV6_FORWARD = "net/ipv6/conf/all/forwarding";
/**
 * net.bridge.bridge-nf-call-ip{,6}tables: bridged IPv4/IPv6 traffic (pod to pod on one node)
 * passes the inet forward hook, where NetworkPolicy is enforced. Per network namespace since
 * Linux 5.3; present only while the br_netfilter module is loaded.
 */
export const BRIDGE_NF_CALL = [
  "net/bridge/bridge-nf-call-iptables",
  "net/bridge/bridge-nf-call-ip6tables",
] as const;

/**
 * Sets `/proc/sys/<key>` to `value` when it differs. Returns whether it changed anything.
 *
 * @example
 * await ensureSysctl(IPV4_FORWARD, "1"); // true the first time, false after
 */
export async function ensureSysctl(key: string, value: string): Promise<boolean> {
  const path = `/proc/sys/${key}`;
  const now = (await Deno.readTextFile(path)).trim();
  if (now === value) return false;
  await Deno.writeTextFile(path, value);
  return true;
}
