// Whether a packet matches one compiled allow rule, exactly as the kernel rule made from it does:
// the peer address in the rule's address set, then protocol and port (or, for an egress named
// port, the destination address and port together). explain uses it; so can renderer tests.
import { formatIp, type Ip } from "../ip/cidr.ts";
import { rangesContain } from "../ip/range.ts";
import type { Protocol } from "../kube/policy_objects.ts";
import type { AddressSet, AllowRule } from "./plan.ts";

/**
 * Whether `ip` is in the set (its own family's ranges only).
 *
 * @example
 * addressSetContains({ v4: [{ start: 1n, end: 9n }], v6: [] }, { family: 4, value: 5n }); // true
 */
export function addressSetContains(set: AddressSet, ip: Ip): boolean {
  return rangesContain(ip.family === 4 ? set.v4 : set.v6, ip.value);
}

/** The far end of a flow and what it carries, as one allow rule sees it. */
export interface RuleProbe {
  /** The source for an ingress rule, the destination for an egress rule. */
  readonly peer: Ip;
  readonly protocol: Protocol;
  /** The destination port. */
  readonly port: number;
}

/**
 * Whether the rule lets the flow through: peers contain the peer address and a port entry
 * matches protocol and destination port. A named (egress) port matches when the peer, which is
 * the destination, is one of its endpoints with that port.
 *
 * @example
 * allowRuleMatches(
 *   { policy: "x/web", rule: 0, peers: "any",
 *     ports: [{ kind: "range", protocol: "TCP", port: 80, endPort: 80 }] },
 *   { peer: parseIp("10.244.1.2"), protocol: "TCP", port: 80 },
 * ); // true
 */
export function allowRuleMatches(rule: AllowRule, probe: RuleProbe): boolean {
  if (rule.peers !== "any" && !addressSetContains(rule.peers, probe.peer)) return false;
  if (rule.ports === "any") return true;
  let peerText: string | undefined;
  return rule.ports.some((p) => {
    if (p.protocol !== probe.protocol) return false;
    if (p.kind === "range") return probe.port >= p.port && probe.port <= p.endPort;
    peerText ??= formatIp(probe.peer);
    return p.endpoints.some((e) => e.ip === peerText && e.port === probe.port);
  });
}
