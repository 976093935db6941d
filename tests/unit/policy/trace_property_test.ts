// Policy semantics exist once (DESIGN.md "Testing"): on random clusters, policies and flows, what
// explainFlow answers from the compiled plan must be what the rendered nftables rules do, walked
// packet by packet (tests/harness/nft_tracer.ts) through each node's desiredTable. The rules
// carry optimisations explain does not model (sets shared across rules and reused across
// compiles, named ports folded into the peer set when every peer agrees, plain and interval sets
// either side of 256 addresses), so this is what checks them.
//
// How a flow meets the kernel: egress through the source pod's node's forward hook, ingress
// through the destination pod's node's (a packet allowed out continues, on the same node, to the
// ingress lookup when both pods live there; bridged, via br_netfilter). Traffic between a pod and
// its own node (its address or the bridge's, i.e. a host-network pod there too) meets no forward
// hook at all: the tracer is not asked and the kernel verdict is "accept", which is what explain
// must say. A pod to itself comes back over the bridge (hairpin) and is traced. Explain knows a
// node's addresses from `state.nodes`; here they include the bridge's (cni0's first address),
// the source of the node's own traffic to its pods (the connected route's `src`, so kubelet
// probes): without it explain denies what the kernel never filters.
//
// Each node's table is rendered with or without the flow log and strict mode, at random: the
// decisions must not change, and a denied first packet is logged once, on the node that drops
// it when that node logs, with the prefix of the policies explain says denied it.
//
// TRACE_SEED=<n> replays one run (a failure prints its seed); TRACE_WORLDS=<n> sets how many
// worlds (10 states each, 30 flows per state); TRACE_STATS=1 prints what the flows reached.
import type { Family } from "../../../lib/ip/cidr.ts";
import { formatIp, parseCidr, parseIp } from "../../../lib/ip/cidr.ts";
import type { Protocol } from "../../../lib/kube/policy_objects.ts";
import { desiredTable } from "../../../lib/node/desired_table.ts";
import { compilePolicies, type PolicyState } from "../../../lib/policy/compile.ts";
import { explainFlow } from "../../../lib/policy/explain.ts";
import { addressSetContains } from "../../../lib/policy/match.ts";
import { policyObjects } from "../../../lib/policy/nft_rules.ts";
import type {
  AddressRange,
  Explanation,
  FlowQuery,
  PolicyPlan,
  PortMatch,
} from "../../../lib/policy/plan.ts";
import { assert } from "../../harness/assert.ts";
import { type FlowDecider, flowLogPrefix } from "../../../lib/policy/flow_log_rules.ts";
import { type ForwardTracer, forwardTracer, type TracePacket } from "../../harness/nft_tracer.ts";
import {
  CLUSTER_CIDRS,
  mutate,
  randomWorld,
  Rng,
  stateOf,
  type World,
} from "../../harness/policy_world.ts";

const WORLDS = Number(Deno.env.get("TRACE_WORLDS") ?? 80);
const STEPS = 10;
const FLOWS = 30;
const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];
const PORTS = [53, 80, 81, 82, 5353, 8080, 8081, 9090, 9091, 1000, 1090];

/** One end of a flow, as the test knows it. */
type End =
  | { readonly kind: "pod"; readonly key: string; readonly node: string; readonly ips: string[] }
  | {
    readonly kind: "node";
    readonly node: string;
    readonly ips: string[];
    /** A host-network pod on that node (it has the node's addresses). */
    readonly hostPod?: string;
  }
  | { readonly kind: "ext"; readonly ips: string[] };

interface Flow {
  readonly from: End;
  readonly to: End;
  readonly query: FlowQuery;
  readonly packet: TracePacket;
  /** Nodes whose forward hook the packet meets, in order. */
  readonly hooks: readonly string[];
  readonly aim?: "named";
}

/** What the forward hooks a packet meets do with it, and the path through each. */
interface KernelVerdict {
  readonly verdict: "accept" | "drop";
  readonly counter?: string;
  readonly paths: string[];
  /** The flow log's prefixes the packet met, over every hook. */
  readonly logged: readonly string[];
  /** The node that dropped it. */
  readonly node?: string;
}

/** Coverage: what the random flows made the rules do, so the test shows it tested something. */
const seen = new Map<string, number>();
const count = (what: string) => seen.set(what, (seen.get(what) ?? 0) + 1);

Deno.test("explainFlow() and the rendered rules agree on random clusters, policies and flows", () => {
  const seed = Number(Deno.env.get("TRACE_SEED") ?? Math.floor(Math.random() * 2 ** 31));
  const rng = new Rng(seed);
  let flows = 0;
  for (let w = 0; w < WORLDS; w++) {
    const world = randomWorld(rng);
    const held = new Set<string>(); // every pod address of this world so far
    let changes = ["new world"];
    for (let step = 0; step < STEPS; step++) {
      if (step > 0) changes = mutate(rng, world);
      const where = `seed ${seed} (TRACE_SEED=${seed}), world ${w}, step ${step}`;
      const state = stateOf(world);
      const tracers = nodeTracers(rng, world, state);
      for (const p of world.pods.values()) p.ips.forEach((ip) => held.add(ip));
      const scene = sceneOf(world, state, held);
      for (let f = 0; f < FLOWS; f++) {
        const flow = randomFlow(rng, scene);
        if (!flow) continue;
        flows++;
        checkFlow(state, tracers, flow, () => describe(where, changes, world, flow));
      }
    }
  }
  if (Deno.env.get("TRACE_STATS")) console.log(flows, Object.fromEntries(seen));
  // The runs must have reached the rule forms they are here to check.
  for (
    const what of [
      "allowed",
      "denied by egress_dropped",
      "denied by ingress_dropped",
      "matched a plain peer set",
      "matched an interval peer set",
      "matched a named-port set",
      "allowed by a named port folded into its peer set",
      "matched an sctp rule",
      "accepted by the self set",
      "allowed by a rule",
      "no forward hook",
      "traced with the flow log",
      "traced without the flow log",
      "logged with its policies",
    ]
  ) {
    assert((seen.get(what) ?? 0) > 0, `seed ${seed}: no flow ${what} in ${flows} flows`);
  }
});

/**
 * Each node's table compiled now, in a random order (the renderer's caches see them mixed), with
 * or without the flow log and strict mode, at random per node and step: they must decide alike.
 * Which nodes log is returned too.
 */
function nodeTracers(rng: Rng, world: World, state: PolicyState): Tracers {
  const out: Tracers = new Map();
  const order = [...world.nodes].sort(() => rng.float() - 0.5);
  for (const node of order) {
    const flowLog = rng.float() < 0.5, strict = rng.float() < 0.5;
    const policy = policyObjects(compilePolicies(state, { node: node.name }), { flowLog });
    const table = desiredTable({
      clusterCidrs: CLUSTER_CIDRS,
      podCIDRs: node.podCIDRs,
      policy,
      strict,
      ...(flowLog ? { flowLog: { rate: 100 } } : {}),
    });
    out.set(node.name, { trace: forwardTracer(table), flowLog });
    count(flowLog ? "traced with the flow log" : "traced without the flow log");
  }
  return out;
}

type Tracers = Map<string, { trace: ForwardTracer; flowLog: boolean }>;

function checkFlow(
  state: PolicyState,
  tracers: Tracers,
  flow: Flow,
  context: () => string,
): void {
  const explained = explainFlow(state, flow.query);
  const fail = (why: string, kernel?: KernelVerdict): never => {
    throw new Error(
      `${why}\n${context()}\nexplain: ${JSON.stringify(explained, null, 1)}\n` +
        (kernel ? `kernel paths:\n  ${kernel.paths.join("\n  ")}` : ""),
    );
  };
  if (explained.src !== flow.packet.saddr || explained.dst !== flow.packet.daddr) {
    fail(`explain used ${explained.src} -> ${explained.dst}`);
  }
  const kernel = traceHooks(tracers, flow.hooks, flow.packet);
  const want = expectedVerdict(explained);
  if (kernel.verdict !== want.verdict || kernel.counter !== want.counter) {
    fail(
      `explain says ${want.verdict}${want.counter ? ` (${want.counter})` : ""}, the rules ` +
        `${kernel.verdict}${kernel.counter ? ` (${kernel.counter})` : ""}`,
      kernel,
    );
  }
  countCoverage(flow, kernel);
  // A denied first packet is logged once, before its drop, naming explain's deciding policies,
  // exactly where the node that dropped it runs the flow log; nothing else is ever logged.
  const wantLogged = kernel.node !== undefined && tracers.get(kernel.node)!.flowLog
    ? [flowLogPrefix(denyingDecider(explained))]
    : [];
  if (JSON.stringify(kernel.logged) !== JSON.stringify(wantLogged)) {
    fail(`logged ${JSON.stringify(kernel.logged)}, not ${JSON.stringify(wantLogged)}`, kernel);
  }
  if (wantLogged.length > 0) count("logged with its policies");
  // Replies and later packets of any connection pass (conntrack), and so does neighbour
  // discovery, whatever the policies: the first rules of the forward chain.
  const later = traceHooks(tracers, flow.hooks, { ...flow.packet, ct: "established" });
  if (later.verdict !== "accept") fail("an established packet was dropped", later);
  if (flow.packet.family === 6) {
    const nd: TracePacket = {
      family: 6,
      saddr: flow.packet.saddr,
      daddr: flow.packet.daddr,
      l4proto: "icmpv6",
      icmpv6Type: flow.packet.dport! % 2 ? "nd-neighbor-solicit" : "nd-neighbor-advert",
      ct: "new",
    };
    const found = traceHooks(tracers, flow.hooks, nd);
    if (found.verdict !== "accept") fail("neighbour discovery was dropped", found);
  }
}

/** Who denied a flow explain denies: egress first (the source's node), then ingress. */
function denyingDecider(e: Explanation): FlowDecider {
  const direction = e.egress.allowed ? "ingress" : "egress";
  return { direction, policies: e[direction].policies };
}

function expectedVerdict(e: Explanation): { verdict: "accept" | "drop"; counter?: string } {
  if (e.allowed) return { verdict: "accept" };
  // Egress is judged first, on the source's node; an allowed egress meets ingress next.
  return { verdict: "drop", counter: e.egress.allowed ? "ingress_dropped" : "egress_dropped" };
}

function traceHooks(
  tracers: Tracers,
  hooks: readonly string[],
  packet: TracePacket,
): KernelVerdict {
  const paths: string[] = [];
  const logged: string[] = [];
  for (const node of hooks) {
    const r = tracers.get(node)!.trace(packet);
    paths.push(`${node}: ${r.path.join("\n    ")}`);
    logged.push(...r.logged);
    if (r.verdict === "drop") return { verdict: "drop", counter: r.counter, paths, logged, node };
  }
  if (hooks.length === 0) paths.push("no forward hook");
  return { verdict: "accept", paths, logged };
}

function countCoverage(flow: Flow, kernel: KernelVerdict): void {
  count(kernel.verdict === "accept" ? "allowed" : `denied by ${kernel.counter}`);
  if (flow.hooks.length === 0) count("no forward hook");
  const text = kernel.paths.join("\n");
  // Set names (lib/policy/nft_rules.ts): e_/i_ peers, er_/ir_ peer ranges, en_ named ports.
  if (/@[ei]_\S+ (?:meta|accept|return)/.test(text)) count("matched a plain peer set");
  if (/@[ei]r_\S+ (?:meta|accept|return)/.test(text)) count("matched an interval peer set");
  if (/@en_\S+ meta.*return$/m.test(text)) count("matched a named-port set");
  // The peer set alone stands for the named port when every peer has it under one number.
  if (flow.aim === "named" && kernel.verdict === "accept" && !/@en_/.test(text)) {
    count("allowed by a named port folded into its peer set");
  }
  if (/meta l4proto sctp\b.*(?:accept|return)$/m.test(text)) count("matched an sctp rule");
  if (/@self[46] accept/.test(text)) count("accepted by the self set");
  if (/^\s*(?:ing|egr)_\S+\[\d+\] (?!counter).*(?:accept|return)$/m.test(text)) {
    count("allowed by a rule");
  }
}

// ---- flows ----

/** What flows are drawn from in one state. */
interface Scene {
  readonly state: PolicyState;
  readonly pods: readonly End[];
  readonly nodes: readonly End[];
  /** Outside addresses: no pod's, no node's. */
  readonly ext: readonly string[];
  /** Every pod and node address -> its end. */
  readonly byIp: ReadonlyMap<string, End>;
  /** The whole cluster's plan: flows aimed at its rules reach them. */
  readonly plan: PolicyPlan;
}

/** The ends a flow can have now: pods with addresses, nodes (and their bridges), outside hosts. */
function sceneOf(world: World, state: PolicyState, held: ReadonlySet<string>): Scene {
  const pods: End[] = [];
  for (const [key, p] of state.pods) {
    if (!p.hostNetwork && p.ips.length > 0) {
      pods.push({ kind: "pod", key, node: p.node, ips: [...p.ips] });
    }
  }
  const nodes: End[] = world.nodes.map((n) => {
    const host = [...state.pods].find(([, p]) => p.hostNetwork && p.node === n.name);
    return { kind: "node", node: n.name, ips: [...n.ips, ...n.gateways], hostPod: host?.[0] };
  });
  const byIp = new Map<string, End>();
  for (const e of [...pods, ...nodes]) for (const ip of e.ips) byIp.set(ip, e);
  // Addresses pods held before are outside now: a set kept from an older compile would show.
  const ext = [...outsideAddresses(state), ...held].filter((ip) => !byIp.has(ip));
  return { state, pods, nodes, ext, byIp, plan: compilePolicies(state) };
}

/** Addresses at the edges of every ipBlock and except in the policies, and a few others. */
function outsideAddresses(state: PolicyState): string[] {
  const out = new Set(["203.0.113.7", "198.51.100.1", "2001:db8:ff::7", "2001:db8:1::1"]);
  for (const { policy } of state.policies.values()) {
    for (const rule of [...policy.ingress, ...policy.egress]) {
      for (const peer of rule.peers ?? []) {
        if (!("ipBlock" in peer)) continue;
        for (const text of [peer.ipBlock.cidr, ...peer.ipBlock.except]) {
          const c = parseCidr(text);
          const last = c.network + (1n << BigInt((c.family === 4 ? 32 : 128) - c.prefix)) - 1n;
          edges(c.family, { start: c.network, end: last }).forEach((ip) => out.add(ip));
        }
      }
    }
  }
  return [...out];
}

/** A range's first and last address and their neighbours, within the family. */
function edges(family: Family, r: AddressRange): string[] {
  const max = (1n << BigInt(family === 4 ? 32 : 128)) - 1n;
  return [r.start - 1n, r.start, r.start + 1n, r.end - 1n, r.end, r.end + 1n]
    .filter((v) => v >= 0n && v <= max && v >= r.start - 1n && v <= r.end + 1n)
    .map((value) => formatIp({ family, value }));
}

/** The two ends and their addresses, and sometimes the port: random, or aimed at a rule. */
interface Draw {
  readonly from: End;
  readonly to: End;
  readonly saddr: string;
  readonly daddr: string;
  readonly port?: { readonly protocol: Protocol; readonly port: number };
  /** "named": aimed at a destination of an egress named port. */
  readonly aim?: "named";
}

function randomFlow(rng: Rng, scene: Scene): Flow | undefined {
  if (scene.pods.length === 0) return undefined;
  const draw = rng.chance(0.5) ? aimedDraw(rng, scene) : randomDraw(rng, scene);
  if (!draw) return undefined;
  const { from, to, saddr, daddr } = draw;
  const { protocol, port } = draw.port ?? randomPort(rng, scene.state, to);
  const [fromText, toText] = queryTexts(rng, [from, to], [saddr, daddr]);
  const query = { from: fromText, to: toText, protocol, port };
  const packet: TracePacket = {
    family: familyOf(saddr),
    saddr,
    daddr,
    l4proto: protocol.toLowerCase() as TracePacket["l4proto"],
    dport: port,
    ct: "new",
  };
  return { from, to, query, packet, hooks: hooksOf(from, to, saddr, daddr), aim: draw.aim };
}

function randomDraw(rng: Rng, scene: Scene): Draw | undefined {
  const ext = (): End => ({ kind: "ext", ips: [rng.pick(scene.ext)] });
  const pod = () => rng.pick(scene.pods);
  const r = rng.float();
  let from: End, to: End;
  if (r < 0.4) [from, to] = [pod(), pod()];
  else if (r < 0.57) [from, to] = [pod(), ext()];
  else if (r < 0.74) [from, to] = [ext(), pod()];
  else if (r < 0.86) [from, to] = [pod(), rng.pick(scene.nodes)];
  else if (r < 0.96) [from, to] = [rng.pick(scene.nodes), pod()];
  else from = to = pod(); // to itself

  const families = ([4, 6] as Family[]).filter((f) =>
    [from, to].every((e) => e.ips.some((ip) => familyOf(ip) === f))
  );
  if (families.length === 0) return undefined;
  const family = rng.pick(families);
  const saddr = rng.pick(from.ips.filter((ip) => familyOf(ip) === family));
  const daddr = from === to ? saddr : rng.pick(to.ips.filter((ip) => familyOf(ip) === family));
  return { from, to, saddr, daddr };
}

/**
 * A flow at one allow rule of one isolated pod: the far end in (or at the edge of) the rule's
 * peers, the port at (or beside) one of its ports. Whether it is allowed is still for explain
 * and the rules to say.
 */
function aimedDraw(rng: Rng, scene: Scene): Draw | undefined {
  const target = rng.pick(scene.plan.targets);
  if (!target) return undefined;
  const dir = target.ingress && (!target.egress || rng.chance(0.5)) ? "ingress" : "egress";
  const rules = target[dir]!.allow;
  const rule = rules.length ? rng.pick(rules) : undefined;
  const near = rng.pick(target.ips);
  const family = familyOf(near);
  let far: string | undefined;
  if (rule && rule.peers !== "any") {
    const ranges = family === 4 ? rule.peers.v4 : rule.peers.v6;
    const range = ranges.length ? rng.pick(ranges) : undefined;
    if (range) {
      const inside = formatIp({
        family,
        value: range.start + rng.bigBelow(range.end - range.start + 1n),
      });
      far = rng.pick([...edges(family, range), inside, inside]);
    }
  }
  // An egress named port: often one of its destinations, on its number there.
  const named = rule && rule.ports !== "any"
    ? rule.ports.flatMap((p) =>
      p.kind === "named" ? p.endpoints.filter((e) => familyOf(e.ip) === family) : []
    )
    : [];
  if (named.length && rng.chance(0.6)) {
    const e = rng.pick(named);
    const protocol = (rule!.ports as PortMatch[]).find((p) =>
      p.kind === "named" && p.endpoints.includes(e)
    )!.protocol;
    // Its number there, or the number the name has on another destination.
    const port = rng.chance(0.6) ? e.port : rng.pick(named).port;
    // Or a peer without that name, on its number: the peer set must not stand for the port.
    const peers = rule!.peers;
    const others = peers === "any"
      ? []
      : scene.pods.flatMap((p) => p.ips).filter((ip) =>
        familyOf(ip) === family && !named.some((n) => n.ip === ip) &&
        addressSetContains(peers, parseIp(ip))
      );
    const daddr = others.length && rng.chance(0.3) ? rng.pick(others) : e.ip;
    const farEnd = scene.byIp.get(daddr)!;
    const nearEnd = scene.byIp.get(near)!;
    return {
      from: nearEnd,
      to: farEnd,
      saddr: near,
      daddr,
      port: { protocol, port },
      aim: "named",
    };
  }
  far ??= rng.pick([...scene.byIp.keys(), ...scene.ext].filter((ip) => familyOf(ip) === family));
  if (far === undefined) return undefined;
  const farEnd = scene.byIp.get(far) ?? { kind: "ext", ips: [far] };
  const nearEnd = scene.byIp.get(near)!;
  const port = rule && rule.ports !== "any" && rule.ports.length
    ? aimedPort(rng, rule.ports, far)
    : undefined;
  return dir === "ingress"
    ? { from: farEnd, to: nearEnd, saddr: far, daddr: near, port }
    : { from: nearEnd, to: farEnd, saddr: near, daddr: far, port };
}

function aimedPort(
  rng: Rng,
  ports: readonly PortMatch[],
  far: string,
): { protocol: Protocol; port: number } {
  const p = rng.pick(ports);
  if (p.kind === "range") {
    const near = [p.port - 1, p.port, p.endPort, p.endPort + 1].filter((n) => n >= 1 && n <= 65535);
    return { protocol: rng.chance(0.9) ? p.protocol : rng.pick(PROTOCOLS), port: rng.pick(near) };
  }
  const mine = p.endpoints.filter((e) => e.ip === far);
  const some = mine.length && rng.chance(0.8) ? rng.pick(mine) : rng.pick(p.endpoints);
  return { protocol: p.protocol, port: some?.port ?? rng.pick(PORTS) };
}

/** Mostly what the policies and the destination's containers name, at and beside the edges. */
function randomPort(rng: Rng, state: PolicyState, to: End): { protocol: Protocol; port: number } {
  const r = rng.float();
  const entries = [...state.policies.values()].flatMap(({ policy }) =>
    [...policy.ingress, ...policy.egress].flatMap((rule) => rule.ports ?? [])
  );
  const dst = to.kind === "pod" ? state.pods.get(to.key)!.ports : [];
  if (r < 0.5 && entries.length > 0) {
    const e = rng.pick(entries);
    if (typeof e.port === "number") {
      const end = e.endPort ?? e.port;
      const port = rng.pick([e.port - 1, e.port, end, end + 1].filter((p) => p >= 1 && p <= 65535));
      return { protocol: e.protocol, port };
    }
    const named = dst.filter((c) => c.name === e.port);
    if (named.length > 0) return { protocol: e.protocol, port: rng.pick(named).port };
  }
  if (r < 0.75 && dst.length > 0) {
    const c = rng.pick(dst);
    return { protocol: c.protocol, port: c.port };
  }
  const protocol = rng.pick(["TCP", "TCP", "UDP", "SCTP"] as Protocol[]);
  return { protocol, port: rng.chance(0.9) ? rng.pick(PORTS) : rng.int(1, 65535) };
}

/**
 * How the query names the ends: by address, or (sometimes) by pod key where explain then picks
 * the same family (the first both ends have, IPv4 first) and the same addresses.
 */
function queryTexts(rng: Rng, ends: [End, End], addrs: [string, string]): [string, string] {
  const texts = ends.map((end, i): { text: string; ips: readonly string[] } => {
    const named = end.kind === "pod"
      ? { key: end.key, ips: end.ips }
      : end.kind === "node" && end.hostPod
      ? { key: end.hostPod, ips: end.ips.slice(0, 2) } // a host pod has the node's, not cni0's
      : undefined;
    if (!named || !rng.chance(0.5)) return { text: addrs[i], ips: [addrs[i]] };
    // Explain takes a pod's first address of the family: ours must be it.
    const first = named.ips.find((ip) => familyOf(ip) === familyOf(addrs[i]));
    return first === addrs[i]
      ? { text: named.key, ips: named.ips }
      : { text: addrs[i], ips: [addrs[i]] };
  });
  const family = ([4, 6] as Family[]).find((f) =>
    texts.every((t) => t.ips.some((ip) => familyOf(ip) === f))
  );
  return family === familyOf(addrs[0]) ? [texts[0].text, texts[1].text] : addrs;
}

/** The nodes whose forward hook the packet crosses (see the header). */
function hooksOf(from: End, to: End, saddr: string, daddr: string): string[] {
  if (from.kind === "pod" && to.kind === "pod") {
    return from.node === to.node ? [from.node] : [from.node, to.node];
  }
  if (from.kind === "pod") {
    if (to.kind === "node" && to.node === from.node) return [];
    return [from.node];
  }
  if (to.kind === "pod") {
    if (from.kind === "node" && from.node === to.node) return [];
    return [to.node];
  }
  throw new Error(`no pod in flow ${saddr} -> ${daddr}`);
}

function familyOf(ip: string): Family {
  return parseIp(ip).family;
}

function describe(where: string, changes: string[], world: World, flow: Flow): string {
  const pods = [...world.pods].map(([k, p]) =>
    `  ${k} node=${p.node} ips=${p.ips.join(",") || "-"}${p.hostNetwork ? " hostNetwork" : ""} ` +
    `labels=${JSON.stringify(p.labels)} ports=${
      p.ports.map((c) => `${c.name || "-"}:${c.port}/${c.protocol}`).join(",")
    }`
  );
  const namespaces = [...world.namespaces].map(([n, ns]) =>
    `  ${n} ${ns ? JSON.stringify(ns.labels) : "(no object)"}`
  );
  const policies = [...world.policies].map(([k, p]) =>
    `  ${k}${p.entry.error ? ` (error: ${p.entry.error})` : ""} ${JSON.stringify(p.spec)}`
  );
  return [
    where,
    `changes: ${changes.join("; ")}`,
    `flow: ${JSON.stringify(flow.query)} packet ${flow.packet.saddr} -> ${flow.packet.daddr}, ` +
    `hooks [${flow.hooks.join(", ")}]`,
    "pods:",
    ...pods,
    "namespaces:",
    ...namespaces,
    "policies:",
    ...policies,
  ].join("\n");
}
