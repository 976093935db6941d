// policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy JSON (network-policy-api v0.2.0,
// apis/v1alpha2/clusternetworkpolicy_types.go) -> ClusterPolicyEntry, validated as the CRD's
// schema validates a new object. An object the agent cannot enforce exactly becomes its
// fail-closed version with the reason (issue 19, "Bad input"), never dropped.
import { type Cidr, formatCidr, parseCidr } from "../ip/cidr.ts";
import {
  describeValue,
  objectAt,
  optionalListAt,
  optionalObjectAt,
  optionalStringAt,
} from "./fields.ts";
import { parseLabelSelector } from "./label_selector.ts";
import { type Direction, type LabelSelector, type Protocol, SELECT_ALL } from "./policy_objects.ts";

/** The tiers a ClusterNetworkPolicy can sit in (NetworkPolicy is the tier between them). */
export type Tier = "Admin" | "Baseline";

/** What a rule does with the traffic it matches. */
export type ClusterRuleAction = "Accept" | "Deny" | "Pass";

/** `NamespacedPod`: pods matching `podSelector` in namespaces matching `namespaceSelector`. */
export interface NamespacedPods {
  readonly namespaceSelector: LabelSelector;
  readonly podSelector: LabelSelector;
}

/** `spec.subject`: exactly one of its two forms. */
export type ClusterSubject =
  | { readonly namespaces: LabelSelector }
  | { readonly pods: NamespacedPods };

/**
 * One `from`/`to` entry. `namespaces` and `pods` select pods (never host-network ones);
 * `nodes` (egress only) the addresses of the matching nodes; `networks` (egress only) CIDRs,
 * canonical (host bits cleared), each matching its own family only.
 */
export type ClusterPeer =
  | { readonly namespaces: LabelSelector }
  | { readonly pods: NamespacedPods }
  | { readonly nodes: LabelSelector }
  | { readonly networks: readonly string[] };

/**
 * One `protocols` entry: a protocol with the destination ports `start`..`end` (1..65535 when
 * `destinationPort` is absent), or `destinationNamedPort`, which names a container port of the
 * destination pod (its protocol is that port's).
 */
export type ClusterProtocol =
  | { readonly protocol: Protocol; readonly start: number; readonly end: number }
  | { readonly namedPort: string };

/** One ingress or egress rule. */
export interface ClusterPolicyRule {
  /** `name`; "" when the rule has none. */
  readonly name: string;
  readonly action: ClusterRuleAction;
  /** `from` (ingress) or `to` (egress): at least one. */
  readonly peers: readonly ClusterPeer[];
  /** Undefined: every protocol and port. */
  readonly protocols?: readonly ClusterProtocol[];
}

/** A ClusterNetworkPolicy, validated. */
export interface ClusterNetworkPolicy {
  readonly name: string;
  readonly tier: Tier;
  /** 0–1000, lower first within the tier. */
  readonly priority: number;
  readonly subject: ClusterSubject;
  readonly ingress: readonly ClusterPolicyRule[];
  readonly egress: readonly ClusterPolicyRule[];
}

/**
 * A ClusterNetworkPolicy as the agent holds it. When the object cannot be enforced exactly (an
 * unknown action, an invalid CIDR, a malformed selector, a priority out of range, a field this
 * agent does not implement such as `domainNames`), `error` says why, naming each field, and
 * `policy` is the fail-closed version: its subject (every pod when the subject is unreadable),
 * at its tier (Admin when unreadable) and priority (0 when it is not an integer), with no rules;
 * `failClosed` says the directions its subjects are denied in: those the object has rules for
 * (both when unreadable).
 */
export interface ClusterPolicyEntry {
  readonly policy: ClusterNetworkPolicy;
  readonly error?: string;
  readonly failClosed?: { readonly ingress: boolean; readonly egress: boolean };
}

/** A policy entry, or why there is none (only when the object has no name). */
export type ParsedClusterNetworkPolicy =
  | { readonly ok: true; readonly entry: ClusterPolicyEntry }
  | { readonly ok: false; readonly key: string; readonly reason: string };

const TIERS: readonly string[] = ["Admin", "Baseline"] satisfies Tier[];
const ACTIONS: readonly string[] = ["Accept", "Deny", "Pass"] satisfies ClusterRuleAction[];
const PROTOCOL_FIELDS: Record<string, Protocol> = { tcp: "TCP", udp: "UDP", sctp: "SCTP" };
/** The CRD's limits: rules per direction, peers per rule, protocols per rule, CIDRs per peer. */
const MAX_ITEMS = 25;
const MAX_RULE_NAME = 100;
const MAX_PRIORITY = 1000;

/** Runs one part of the parse, keeping its error and going on with the next part. */
type Attempt = <T>(part: () => T) => T | undefined;

/**
 * Parses a ClusterNetworkPolicy. Anything the CRD's schema would reject (a tier other than Admin
 * or Baseline, a priority outside 0–1000, a subject or peer or protocol with other than exactly
 * one field, an action other than Accept, Deny or Pass, a rule without peers, more than 25 rules,
 * peers, protocols or CIDRs, a bad selector, a bad CIDR, a port outside 1–65535, a range whose
 * start is not below its end, a named port beside a `networks` or `nodes` peer) and what this
 * agent does not enforce (`domainNames`) gives `entry.error`, every problem named by its field
 * and joined with "; ", and the fail-closed policy (see {@linkcode ClusterPolicyEntry}).
 *
 * @example
 * const parsed = parseClusterNetworkPolicy({
 *   metadata: { name: "deny-internet" },
 *   spec: { tier: "Admin", priority: 10, subject: { namespaces: {} },
 *     egress: [{ action: "Deny", to: [{ networks: ["0.0.0.0/33"] }] }] },
 * });
 * // parsed.ok === true; parsed.entry.error ===
 * //   'spec.egress[0].to[0].networks[0]: "0.0.0.0/33" is not a CIDR'
 * // parsed.entry.failClosed: { ingress: false, egress: true }
 */
export function parseClusterNetworkPolicy(obj: unknown): ParsedClusterNetworkPolicy {
  let name = "";
  let o: Record<string, unknown>;
  try {
    o = objectAt(obj, "clusternetworkpolicy");
    const metadata = objectAt(o.metadata, "metadata");
    name = optionalStringAt(metadata.name, "metadata.name", "");
  } catch (err) {
    return { ok: false, key: name || "?", reason: (err as Error).message };
  }
  if (name === "") {
    return { ok: false, key: "?", reason: "clusternetworkpolicy object has no metadata.name" };
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
  const spec = attempt(() => objectAt(o.spec, "spec"));
  const tier = spec && attempt(() => parseTier(spec.tier));
  const priority = spec && attempt(() => parsePriority(spec.priority));
  const subject = spec && attempt(() => parseSubject(spec.subject));
  const ingressList = spec && attempt(() => ruleList(spec.ingress, "spec.ingress"));
  const egressList = spec && attempt(() => ruleList(spec.egress, "spec.egress"));
  const ingress = ingressList?.map((r, i) =>
    parseRule(r, `spec.ingress[${i}]`, "ingress", attempt)
  );
  const egress = egressList?.map((r, i) => parseRule(r, `spec.egress[${i}]`, "egress", attempt));

  if (errors.length === 0) {
    const policy: ClusterNetworkPolicy = {
      name,
      tier: tier!,
      priority: priority!,
      subject: subject!,
      ingress: ingress as ClusterPolicyRule[],
      egress: egress as ClusterPolicyRule[],
    };
    return { ok: true, entry: { policy } };
  }
  // Fail closed: deny the subjects where the policy would have had a say, at its place in the
  // order, and allow nothing it would have allowed.
  const rawPriority = spec?.priority;
  const policy: ClusterNetworkPolicy = {
    name,
    tier: tier ?? "Admin",
    priority: priority ?? (Number.isInteger(rawPriority) ? rawPriority as number : 0),
    subject: subject ?? { namespaces: SELECT_ALL },
    ingress: [],
    egress: [],
  };
  const failClosed = {
    ingress: ingressList === undefined || ingressList.length > 0,
    egress: egressList === undefined || egressList.length > 0,
  };
  return { ok: true, entry: { policy, error: errors.join("; "), failClosed } };
}

function parseTier(value: unknown): Tier {
  if (typeof value === "string" && TIERS.includes(value)) return value as Tier;
  throw new Error(`spec.tier: ${describeValue(value)} is not a tier (want Admin or Baseline)`);
}

function parsePriority(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new Error(`spec.priority: want an integer, got ${describeValue(value)}`);
  }
  if (value < 0 || value > MAX_PRIORITY) {
    throw new Error(`spec.priority: ${value} is out of range (want 0-${MAX_PRIORITY})`);
  }
  return value;
}

function parseSubject(value: unknown): ClusterSubject {
  const o = objectAt(value, "spec.subject");
  const field = onlyField(o, "spec.subject", ["namespaces", "pods"]);
  if (field === "namespaces") {
    return { namespaces: parseLabelSelector(o.namespaces, "spec.subject.namespaces") };
  }
  return { pods: parseNamespacedPods(o.pods, "spec.subject.pods") };
}

function parseNamespacedPods(value: unknown, path: string): NamespacedPods {
  const o = objectAt(value, path);
  if (o.podSelector === undefined || o.podSelector === null) {
    throw new Error(`${path}.podSelector: required`);
  }
  return {
    namespaceSelector: parseLabelSelector(o.namespaceSelector ?? {}, `${path}.namespaceSelector`),
    podSelector: parseLabelSelector(o.podSelector, `${path}.podSelector`),
  };
}

/**
 * The one field of `o` that is set, of `known`; an error naming `path` when none or several are
 * set, or another field is: a field we do not know may be a newer CRD's, and a peer we cannot
 * read must not be read as a narrower one (the API documentation: "it should fail closed").
 */
function onlyField(o: Record<string, unknown>, path: string, known: readonly string[]): string {
  const set = Object.keys(o).filter((k) => o[k] !== undefined && o[k] !== null);
  const unknown = set.filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    throw new Error(
      `${path}: unknown field ${JSON.stringify(unknown[0])} (want exactly one of ${
        known.join(", ")
      })`,
    );
  }
  if (set.length !== 1) {
    throw new Error(
      `${path}: ${set.length === 0 ? "no" : "more than one"} field set ` +
        `(want exactly one of ${known.join(", ")})`,
    );
  }
  return set[0];
}

function ruleList(value: unknown, path: string): readonly unknown[] {
  const list = optionalListAt(value, path) ?? [];
  if (list.length > MAX_ITEMS) {
    throw new Error(`${path}: ${list.length} rules, at most ${MAX_ITEMS} allowed`);
  }
  return list;
}

function parseRule(
  value: unknown,
  path: string,
  direction: Direction,
  attempt: Attempt,
): ClusterPolicyRule | undefined {
  const o = attempt(() => objectAt(value, path));
  if (o === undefined) return undefined;
  const name = attempt(() => {
    const text = optionalStringAt(o.name, `${path}.name`, "");
    if (text.length > MAX_RULE_NAME) {
      throw new Error(`${path}.name: ${text.length} characters, at most ${MAX_RULE_NAME} allowed`);
    }
    return text;
  });
  const action = attempt(() => {
    if (typeof o.action === "string" && ACTIONS.includes(o.action)) {
      return o.action as ClusterRuleAction;
    }
    throw new Error(
      `${path}.action: ${describeValue(o.action)} is not an action (want Accept, Deny or Pass)`,
    );
  });
  const peersField = direction === "ingress" ? "from" : "to";
  const peerList = attempt(() => boundedList(o[peersField], `${path}.${peersField}`));
  const peers = peerList?.map((p, i) =>
    attempt(() => parsePeer(p, `${path}.${peersField}[${i}]`, direction))
  );
  const protocolList = attempt(() => {
    if (o.protocols === undefined || o.protocols === null) return undefined;
    return boundedList(o.protocols, `${path}.protocols`);
  });
  const protocols = protocolList?.map((p, i) =>
    attempt(() => parseProtocol(p, `${path}.protocols[${i}]`))
  );
  // The CRD's rule: a named port exists only on pods, never on networks or nodes.
  const named = protocols?.findIndex((p) => p !== undefined && "namedPort" in p) ?? -1;
  const hostPeer = peers?.findIndex((p) => p !== undefined && ("networks" in p || "nodes" in p)) ??
    -1;
  if (named >= 0 && hostPeer >= 0) {
    attempt(() => {
      throw new Error(
        `${path}.protocols[${named}].destinationNamedPort: may not be used with a networks or ` +
          `nodes peer (${path}.${peersField}[${hostPeer}]), which has no named ports`,
      );
    });
  }
  if (name === undefined || action === undefined || peers === undefined) return undefined;
  const rule: { name: string; action: ClusterRuleAction; peers: ClusterPeer[] } & {
    protocols?: ClusterProtocol[];
  } = { name, action, peers: peers as ClusterPeer[] };
  if (protocols !== undefined) rule.protocols = protocols as ClusterProtocol[];
  return rule;
}

/** A list of 1 to 25 items, or an error naming `path`. */
function boundedList(value: unknown, path: string): readonly unknown[] {
  const list = optionalListAt(value, path);
  if (list === undefined || list.length === 0) {
    throw new Error(`${path}: must have at least one item`);
  }
  if (list.length > MAX_ITEMS) {
    throw new Error(`${path}: ${list.length} items, at most ${MAX_ITEMS} allowed`);
  }
  return list;
}

const INGRESS_PEERS = ["namespaces", "pods"];
const EGRESS_PEERS = ["namespaces", "pods", "nodes", "networks", "domainNames"];

function parsePeer(value: unknown, path: string, direction: Direction): ClusterPeer {
  const o = objectAt(value, path);
  const field = onlyField(o, path, direction === "ingress" ? INGRESS_PEERS : EGRESS_PEERS);
  switch (field) {
    case "namespaces":
      return { namespaces: parseLabelSelector(o.namespaces, `${path}.namespaces`) };
    case "pods":
      return { pods: parseNamespacedPods(o.pods, `${path}.pods`) };
    case "nodes":
      return { nodes: parseLabelSelector(o.nodes, `${path}.nodes`) };
    case "networks": {
      const list = boundedList(o.networks, `${path}.networks`);
      const networks = list.map((c, i) => {
        const at = `${path}.networks[${i}]`;
        return formatCidr(parseCidrAt(optionalStringAt(c, at, ""), at));
      });
      return { networks: [...new Set(networks)] };
    }
    default:
      // domainNames needs a DNS resolver this agent does not have: enforcing the rest of the
      // policy without it would allow or deny other traffic than the policy says.
      throw new Error(`${path}.domainNames: not supported by this agent`);
  }
}

function parseCidrAt(text: string, path: string): Cidr {
  try {
    return parseCidr(text);
  } catch {
    throw new Error(`${path}: ${JSON.stringify(text)} is not a CIDR`);
  }
}

function parseProtocol(value: unknown, path: string): ClusterProtocol {
  const o = objectAt(value, path);
  const field = onlyField(o, path, ["tcp", "udp", "sctp", "destinationNamedPort"]);
  if (field === "destinationNamedPort") {
    const name = optionalStringAt(o.destinationNamedPort, `${path}.destinationNamedPort`, "");
    if (name === "") throw new Error(`${path}.destinationNamedPort: must not be empty`);
    return { namedPort: name };
  }
  const protocol = PROTOCOL_FIELDS[field];
  const at = `${path}.${field}`;
  const body = objectAt(o[field], at);
  // The API documentation: "If DestinationPort is omitted, all ports for the specified protocol
  // match."
  const port = optionalObjectAt(body.destinationPort, `${at}.destinationPort`);
  if (port === undefined) return { protocol, start: 1, end: 65535 };
  const portPath = `${at}.destinationPort`;
  const kind = onlyField(port, portPath, ["number", "range"]);
  if (kind === "number") {
    const n = portNumber(port.number, `${portPath}.number`);
    return { protocol, start: n, end: n };
  }
  const range = objectAt(port.range, `${portPath}.range`);
  const start = portNumber(range.start, `${portPath}.range.start`);
  const end = portNumber(range.end, `${portPath}.range.end`);
  if (start >= end) {
    throw new Error(`${portPath}.range: start ${start} must be less than end ${end}`);
  }
  return { protocol, start, end };
}

function portNumber(n: unknown, path: string): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw new Error(`${path}: ${describeValue(n)} is not a port number (want 1-65535)`);
  }
  return n;
}
