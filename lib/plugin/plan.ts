// Derived names and addresses for one attachment. Names are derived, never random, so DEL,
// CHECK and GC find the host veth from (container ID, ifname) alone, even without a netns.
import { type Cidr, formatIp, type Ip } from "../ip/cidr.ts";
import { nameDigest } from "../sys/digest.ts";
import type { PodAddress, PodRoute, VethPlan } from "../net/link.ts";

/** Host veth name: "veth" + 11 hex characters of SHA-256(containerID/ifname) = 15 characters. */
export function hostVethName(containerId: string, ifname: string): string {
  return "veth" + (nameDigest(`${containerId}/${ifname}`)).slice(0, 11);
}

/** Whether `name` looks like a host veth we created. */
export function isHostVethName(name: string): boolean {
  return /^veth[0-9a-f]{11}$/.test(name);
}

/** A locally administered unicast MAC derived from `seed`. */
export function derivedMac(seed: string): string {
  const hex = (nameDigest(seed)).slice(0, 10);
  return ["02", ...hex.match(/../g)!].join(":");
}

/** The pod address and bridge gateway for one lease. */
export function podAddress(ip: Ip, cidr: Cidr, gateway: Ip): PodAddress {
  return {
    family: ip.family,
    address: `${formatIp(ip)}/${cidr.prefix}`,
    gateway: formatIp(gateway),
    gatewayCidr: `${formatIp(gateway)}/${cidr.prefix}`,
  };
}

/** Everything the datapath needs, from the request and the addresses IPAM gave. */
export function planVeth(req: {
  containerId: string;
  ifname: string;
  netns: string;
  bridge: string;
  mtu: number;
  hairpin: boolean;
  addresses: readonly PodAddress[];
  routes: readonly PodRoute[];
}): VethPlan {
  const id = `${req.containerId}/${req.ifname}`;
  return {
    netns: req.netns,
    ifname: req.ifname,
    podMac: derivedMac(`pod/${id}`),
    hostVeth: hostVethName(req.containerId, req.ifname),
    hostMac: derivedMac(`host/${id}`),
    bridge: req.bridge,
    // Fixed per bridge and gateway set, so every ADD and every restart agrees on it.
    bridgeMac: derivedMac(
      `bridge/${req.bridge}/${req.addresses.map((a) => a.gatewayCidr).join(",")}`,
    ),
    mtu: req.mtu,
    hairpin: req.hairpin,
    addresses: req.addresses,
    routes: req.routes,
  };
}
