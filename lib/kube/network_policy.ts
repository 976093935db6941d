// networking.k8s.io/v1 NetworkPolicy JSON -> PolicyEntry, validated as the API server validates a
// new object (pkg/apis/networking/validation ValidateNetworkPolicySpec). An object the agent cannot
// enforce exactly becomes its fail-closed version with the reason (issue 10, "Bad input").
import { type Cidr, cidrContains, formatCidr, parseCidr } from "../ip/cidr.ts";
import {
  describeValue,
  objectAt,
  optionalListAt,
  optionalObjectAt,
  optionalStringAt,
} from "./fields.ts";
import { parseLabelSelector } from "./label_selector.ts";
import type {
  LabelSelector,
  NetworkPolicy,
  PolicyEntry,
  PolicyPeer,
  PolicyPort,
  PolicyRule,
  Protocol,
} from "./policy_objects.ts";
import { objectKey, PROTOCOLS, SELECT_ALL } from "./policy_objects.ts";

/** A policy entry, or why there is none (only when the object has no namespace or name). */
export type ParsedNetworkPolicy =
  | { readonly ok: true; readonly entry: PolicyEntry }
  | { readonly ok: false; readonly key: string; readonly reason: string };

/** Runs one part of the parse, keeping its error and going on with the next part. */
type Attempt = <T>(part: () => T) => T | undefined;

/**
 * Parses a NetworkPolicy. `types` is `policyTypes` when given, else (absent or empty) inferred
 * as the API server defaults it: Ingress always, Egress when `spec.egress` has at least one rule. Anything the
 * API server would reject (a bad selector or operator, a protocol other than TCP/UDP/SCTP, a
 * port outside 1–65535 or a malformed port name, `endPort` without a numeric `port` or below it,
 * a bad CIDR or an `except` not strictly inside it, `ipBlock` beside a selector in one peer, an
 * unknown policy type) gives `entry.error`, every problem named by its field and joined with
 * "; ", and the fail-closed policy: the same targets (the whole namespace when `podSelector` is
 * unreadable), isolated in its types (both when they are unreadable), with no rules.
 * ipBlock CIDRs come back canonical (host bits cleared, as Go's net.ParseCIDR reads them).
 *
 * @example
 * const parsed = parseNetworkPolicy({
 *   metadata: { namespace: "x", name: "deny" },
 *   spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }] },
 * });
 * // parsed.ok === true; parsed.entry.error ===
 * //   'spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33" is not a CIDR'
 * // parsed.entry.policy.types: { ingress: true, egress: false }; ingress: []
 */
export function parseNetworkPolicy(obj: unknown): ParsedNetworkPolicy {
  let namespace = "", name = "";
  let o: Record<string, unknown>;
  try {
    o = objectAt(obj, "networkpolicy");
    const metadata = objectAt(o.metadata, "metadata");
    namespace = optionalStringAt(metadata.namespace, "metadata.namespace", "");
    name = optionalStringAt(metadata.name, "metadata.name", "");
  } catch (err) {
    return { ok: false, key: keyOf(namespace, name), reason: (err as Error).message };
  }
  if (namespace === "" || name === "") {
    const missing = namespace === "" ? "metadata.namespace" : "metadata.name";
    return {
      ok: false,
      key: keyOf(namespace, name),
      reason: `networkpolicy object has no ${missing}`,
    };
  }

  const errors: string[] = [];
  const attempt: Attempt = (fn) => {
    try {
      return fn();
    } catch (err) {
      errors.push((err as Error).message);
      return undefined;
    }
  };
  const spec = attempt(() => optionalObjectAt(o.spec, "spec") ?? {});
  const podSelector = spec &&
    attempt(() => parseLabelSelector(spec.podSelector ?? {}, "spec.podSelector"));
  const ingressList = spec && attempt(() => optionalListAt(spec.ingress, "spec.ingress") ?? []);
  const egressList = spec && attempt(() => optionalListAt(spec.egress, "spec.egress") ?? []);
  const ingress = ingressList?.map((r, i) => parseRule(r, `spec.ingress[${i}]`, "from", attempt));
  const egress = egressList?.map((r, i) => parseRule(r, `spec.egress[${i}]`, "to", attempt));
  const types = spec && attempt(() => parseTypes(spec.policyTypes, egressList));

  if (errors.length === 0) {
    const policy: NetworkPolicy = {
      namespace,
      name,
      podSelector: podSelector!,
      types: types!,
      ingress: ingress as PolicyRule[],
      egress: egress as PolicyRule[],
    };
    return { ok: true, entry: { policy } };
  }
  // Fail closed: isolate what the policy would have isolated, allow nothing it would have allowed.
  const policy: NetworkPolicy = {
    namespace,
    name,
    podSelector: podSelector ?? SELECT_ALL,
    types: types ?? { ingress: true, egress: true },
    ingress: [],
    egress: [],
  };
  return { ok: true, entry: { policy, error: errors.join("; ") } };
}

function keyOf(namespace: string, name: string): string {
  return objectKey(namespace || "?", name || "?");
}

/**
 * `policyTypes`, or inferred when absent or empty, as the API server's defaulting does
 * (SetDefaults_NetworkPolicy). Undefined when inference needs an unreadable `spec.egress`
 * (its own error is already recorded): the caller then isolates both directions.
 */
function parseTypes(
  value: unknown,
  egressRules: readonly unknown[] | undefined,
): { ingress: boolean; egress: boolean } | undefined {
  const list = optionalListAt(value, "spec.policyTypes") ?? [];
  if (list.length === 0) {
    return egressRules && { ingress: true, egress: egressRules.length > 0 };
  }
  if (list.length > 2) {
    throw new Error(`spec.policyTypes: may not specify more than two policyTypes`);
  }
  const types = { ingress: false, egress: false };
  list.forEach((t, i) => {
    if (t === "Ingress") types.ingress = true;
    else if (t === "Egress") types.egress = true;
    else {
      throw new Error(
        `spec.policyTypes[${i}]: ${describeValue(t)} is not a policy type (want Ingress or Egress)`,
      );
    }
  });
  return types;
}

function parseRule(
  value: unknown,
  path: string,
  peersField: "from" | "to",
  attempt: Attempt,
): PolicyRule | undefined {
  const o = attempt(() => objectAt(value, path));
  if (o === undefined) return undefined;
  const peerList = attempt(() => optionalListAt(o[peersField], `${path}.${peersField}`));
  const portList = attempt(() => optionalListAt(o.ports, `${path}.ports`));
  const peers = peerList?.map((p, i) => attempt(() => parsePeer(p, `${path}.${peersField}[${i}]`)));
  const ports = portList?.map((p, i) => attempt(() => parsePort(p, `${path}.ports[${i}]`)));
  const rule: { peers?: PolicyPeer[]; ports?: PolicyPort[] } = {};
  if (peers !== undefined) rule.peers = peers as PolicyPeer[];
  if (ports !== undefined) rule.ports = ports as PolicyPort[];
  return rule;
}

function parsePeer(value: unknown, path: string): PolicyPeer {
  const o = objectAt(value, path);
  const has = (v: unknown) => v !== undefined && v !== null;
  const count = [o.podSelector, o.namespaceSelector, o.ipBlock].filter(has).length;
  if (count === 0) {
    throw new Error(`${path}: must specify a peer (podSelector, namespaceSelector or ipBlock)`);
  }
  if (has(o.ipBlock)) {
    if (count > 1) throw new Error(`${path}: may not specify both ipBlock and another peer`);
    return { ipBlock: parseIpBlock(o.ipBlock, `${path}.ipBlock`) };
  }
  const peer: { pods?: LabelSelector; namespaces?: LabelSelector } = {};
  if (has(o.podSelector)) peer.pods = parseLabelSelector(o.podSelector, `${path}.podSelector`);
  if (has(o.namespaceSelector)) {
    peer.namespaces = parseLabelSelector(o.namespaceSelector, `${path}.namespaceSelector`);
  }
  return peer;
}

function parseIpBlock(value: unknown, path: string): { cidr: string; except: string[] } {
  const o = objectAt(value, path);
  const text = optionalStringAt(o.cidr, `${path}.cidr`, "");
  if (text === "") throw new Error(`${path}.cidr: required`);
  const block = parseCidrAt(text, `${path}.cidr`);
  const except = (optionalListAt(o.except, `${path}.except`) ?? []).map((e, i) => {
    const at = `${path}.except[${i}]`;
    const cidr = parseCidrAt(optionalStringAt(e, at, ""), at);
    // The API server's rule: inside cidr and strictly longer (ValidateIPBlock).
    const inside = cidrContains(block, { family: cidr.family, value: cidr.network }) &&
      cidr.prefix > block.prefix;
    if (!inside) {
      throw new Error(`${at}: ${describeValue(e)} must be a strict subset of cidr ${text}`);
    }
    return formatCidr(cidr);
  });
  return { cidr: formatCidr(block), except };
}

function parseCidrAt(text: string, path: string): Cidr {
  try {
    return parseCidr(text);
  } catch {
    throw new Error(`${path}: ${JSON.stringify(text)} is not a CIDR`);
  }
}

function parsePort(value: unknown, path: string): PolicyPort {
  const o = objectAt(value, path);
  const protocol = o.protocol ?? "TCP";
  if (typeof protocol !== "string" || !PROTOCOLS.includes(protocol)) {
    throw new Error(
      `${path}.protocol: ${describeValue(protocol)} is not supported (want TCP, UDP or SCTP)`,
    );
  }
  const out: { protocol: Protocol; port?: number | string; endPort?: number } = {
    protocol: protocol as Protocol,
  };
  const port = o.port ?? undefined;
  if (typeof port === "number") out.port = portNumber(port, `${path}.port`);
  else if (typeof port === "string") out.port = portName(port, `${path}.port`);
  else if (port !== undefined) {
    throw new Error(`${path}.port: want a number or a name, got ${describeValue(port)}`);
  }
  const endPort = o.endPort ?? undefined;
  if (endPort !== undefined) {
    if (out.port === undefined) {
      throw new Error(`${path}.endPort: may not be specified when port is not specified`);
    }
    if (typeof out.port === "string") {
      throw new Error(`${path}.endPort: may not be specified when port is non-numeric`);
    }
    if (typeof endPort !== "number") {
      throw new Error(`${path}.endPort: want a number, got ${describeValue(endPort)}`);
    }
    out.endPort = portNumber(endPort, `${path}.endPort`);
    if (out.endPort < out.port) {
      throw new Error(`${path}.endPort: ${endPort} must be greater than or equal to port`);
    }
  }
  return out;
}

function portNumber(n: number, path: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    throw new Error(`${path}: ${n} is not a port number (want 1-65535)`);
  }
  return n;
}

// IANA service name, as k8s.io/apimachinery validation.IsValidPortName checks it.
function portName(name: string, path: string): string {
  const ok = name.length >= 1 && name.length <= 15 && /^[-a-z0-9]+$/.test(name) &&
    /[a-z]/.test(name) && !name.startsWith("-") && !name.endsWith("-") && !name.includes("--");
  if (!ok) {
    throw new Error(
      `${path}: ${JSON.stringify(name)} is not a port name (want at most 15 lowercase ` +
        `alphanumerics or '-', at least one letter, no leading, trailing or double '-')`,
    );
  }
  return name;
}
