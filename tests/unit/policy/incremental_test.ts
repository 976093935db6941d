// The compiler and renderer the agent keeps (createPolicyCompiler, createPolicyRenderer) against a
// compile and render from scratch, event after event: on random clusters (tests/harness/
// policy_world.ts, with ClusterNetworkPolicies and node labels added here) changed one to three
// things at a time as the informers change them (a pod relabelled, added, deleted, moved, its
// addresses reused; a namespace relabelled; a policy added, replaced or deleted; objects replaced
// by equal copies; many pods at once), the plan must equal compilePolicies' and the rendered
// table must be, text for text, the one policyObjects renders from it (set elements sorted: a
// set's elements have no order).
//
// INCREMENTAL_SEED=<n> replays one run (a failure prints its seed); INCREMENTAL_WORLDS=<n> sets
// how many worlds (40 states each).
import type { ClusterPolicyEntry } from "../../../lib/kube/cluster_network_policy.ts";
import { parseClusterNetworkPolicy } from "../../../lib/kube/cluster_network_policy.ts";
import { renderFullTable } from "../../../lib/nft/ruleset.ts";
import { desiredTable } from "../../../lib/node/desired_table.ts";
import {
  type CompileOptions,
  compilePolicies,
  createPolicyCompiler,
  type PolicyCompiler,
  type PolicyState,
} from "../../../lib/policy/compile.ts";
import { createPolicyRenderer, policyObjects } from "../../../lib/policy/nft_rules.ts";
import { assertEquals } from "../../harness/assert.ts";
import {
  CLUSTER_CIDRS,
  mutate,
  randomWorld,
  Rng,
  stateOf,
  type World,
} from "../../harness/policy_world.ts";

const WORLDS = Number(Deno.env.get("INCREMENTAL_WORLDS") ?? 40);
const STEPS = 40;

/** A world with what this test adds to it: ClusterNetworkPolicies and node labels. */
interface Scene {
  readonly world: World;
  readonly cluster: Map<string, ClusterPolicyEntry>;
  nodeLabels: Map<string, Record<string, string>>;
}

/** One compiler under test, with what it is asked for, and a renderer per node when it has one. */
interface Subject {
  readonly opts: CompileOptions;
  readonly compiler: PolicyCompiler;
  readonly renderer?: ReturnType<typeof createPolicyRenderer>;
  /** The renderer's `--flow-log denied` (deny paths log, naming their deciders). */
  readonly flowLog?: boolean;
  readonly podCIDRs?: readonly string[];
}

Deno.test("createPolicyCompiler() and createPolicyRenderer() give, event after event, what a compile and render from scratch give", () => {
  const seed = Number(Deno.env.get("INCREMENTAL_SEED") ?? Math.floor(Math.random() * 2 ** 31));
  const rng = new Rng(seed);
  const seen = new Map<string, number>();
  for (let w = 0; w < WORLDS; w++) {
    const scene: Scene = { world: randomWorld(rng), cluster: new Map(), nodeLabels: new Map() };
    for (let i = rng.int(0, 3); i > 0; i--) addClusterPolicy(rng, scene);
    relabelNodes(rng, scene);
    const subjects = subjectsFor(rng, scene);
    let changes = ["new world"];
    for (let step = 0; step < STEPS; step++) {
      if (step > 0) changes = change(rng, scene);
      for (const c of changes) seen.set(c.slice(0, c.indexOf(":")), 1);
      const state = stateOfScene(scene);
      const where = () =>
        `seed ${seed} (INCREMENTAL_SEED=${seed}), world ${w}, step ${step}, after ` +
        changes.join("; ");
      for (const s of subjects) check(s, state, where);
    }
  }
  // The runs must have reached the events they are here to check.
  for (const what of ["relabel", "add", "delete", "move", "copy", "bulk", "cluster", "nodes"]) {
    if (!seen.has(what)) throw new Error(`seed ${seed}: no "${what}" event in the runs`);
  }
});

/** Compilers for each node (rendered), for every pod, and for a few listed pods. */
function subjectsFor(rng: Rng, scene: Scene): Subject[] {
  // Small limits on some compilers, so starting over and rebuilding sets run here too.
  const tuning = () =>
    rng.chance(0.3) ? { resetAfter: rng.int(0, 4), oneByOne: rng.int(0, 3) } : {};
  const out: Subject[] = scene.world.nodes.map((n) => {
    const flowLog = rng.chance(0.5);
    return {
      opts: { node: n.name },
      compiler: createPolicyCompiler({ node: n.name }, tuning()),
      renderer: createPolicyRenderer({ flowLog }),
      flowLog,
      podCIDRs: n.podCIDRs,
    };
  });
  out.push({ opts: {}, compiler: createPolicyCompiler({}, tuning()) });
  const keys = [...scene.world.pods.keys()];
  const pods = [...new Set([rng.pick(keys), rng.pick(keys), "x/p9"])];
  out.push({ opts: { pods }, compiler: createPolicyCompiler({ pods }, tuning()) });
  return out;
}

function check(s: Subject, state: PolicyState, where: () => string): void {
  const plan = s.compiler.compile(state);
  const fresh = compilePolicies(state, s.opts);
  assertEquals(plan, fresh, `${where()}: the plan for ${JSON.stringify(s.opts)} differs`);
  if (s.renderer === undefined) return;
  // Elements of a set have no order (a changed set lists the new ones last): sorted here.
  const table = (objects: ReturnType<typeof policyObjects>) => {
    const t = desiredTable({ clusterCidrs: CLUSTER_CIDRS, podCIDRs: s.podCIDRs!, policy: objects });
    const sets = new Map([...t.sets].map(([name, set]) => {
      const elements = new Map([...set.elements].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      return [name, { ...set, elements }];
    }));
    return renderFullTable({ ...t, sets });
  };
  const got = table(s.renderer.render(plan));
  const want = table(policyObjects(fresh, { flowLog: s.flowLog }));
  if (got !== want) {
    throw new Error(`${where()}: the table of ${s.opts.node} differs\n${lineDiff(got, want)}`);
  }
}

function lineDiff(got: string, want: string): string {
  const a = got.split("\n"), b = want.split("\n");
  const gone = b.filter((l) => !a.includes(l)).map((l) => `- ${l}`);
  const extra = a.filter((l) => !b.includes(l)).map((l) => `+ ${l}`);
  return [...gone, ...extra].join("\n") || "(same lines, another order)";
}

function stateOfScene(scene: Scene): PolicyState {
  const state = stateOf(scene.world);
  if (scene.cluster.size === 0 && scene.nodeLabels.size === 0) return state;
  return { ...state, clusterPolicies: new Map(scene.cluster), nodeLabels: scene.nodeLabels };
}

/** One to three events: the world's own, or ones this test adds. */
function change(rng: Rng, scene: Scene): string[] {
  const out: string[] = [];
  for (let n = rng.int(1, 3); n > 0; n--) {
    const r = rng.float();
    if (r < 0.5) out.push(...mutate(rng, scene.world).map(nameOf));
    else if (r < 0.62) out.push(addClusterPolicy(rng, scene));
    else if (r < 0.67) out.push(deleteClusterPolicy(rng, scene));
    else if (r < 0.72) out.push(relabelNodes(rng, scene));
    else if (r < 0.8) out.push(movePod(rng, scene.world));
    else if (r < 0.9) out.push(copyObjects(rng, scene.world));
    else out.push(bulkRelabel(rng, scene.world));
  }
  return out;
}

/** The world's change descriptions, first word the kind of event. */
function nameOf(change: string): string {
  if (change.startsWith("relabel") || change.startsWith("new ports")) return `relabel: ${change}`;
  if (change.startsWith("add") || change.startsWith("pod ")) return `add: ${change}`;
  if (change.startsWith("delete")) return `delete: ${change}`;
  return `other: ${change}`;
}

const NS_SELECTORS = [{}, { matchLabels: { env: "prod" } }, { matchLabels: { team: "a" } }, {
  matchExpressions: [{ key: "env", operator: "NotIn", values: ["prod"] }],
}];
const POD_SELECTORS = [{}, { matchLabels: { app: "web" } }, { matchLabels: { tier: "be" } }, {
  matchExpressions: [{ key: "role", operator: "Exists" }],
}];

function addClusterPolicy(rng: Rng, scene: Scene): string {
  const name = `cnp-${rng.int(0, 5)}`; // a name in use is replaced
  const peer = (egress: boolean): unknown => {
    switch (rng.int(0, egress ? 3 : 1)) {
      case 0:
        return { namespaces: rng.pick(NS_SELECTORS) };
      case 1:
        return {
          pods: { namespaceSelector: rng.pick(NS_SELECTORS), podSelector: rng.pick(POD_SELECTORS) },
        };
      case 2:
        return { networks: [rng.pick(["10.244.1.0/24", "10.244.0.0/16", "fd00:10:244:2::/64"])] };
      default:
        return { nodes: { matchLabels: { role: rng.pick(["infra", "worker"]) } } };
    }
  };
  const rule = (egress: boolean) => {
    const peers = [...Array(rng.int(1, 2))].map(() => peer(egress));
    const named = !peers.some((p) => "networks" in (p as object) || "nodes" in (p as object));
    const protocols = rng.pick([
      undefined,
      [{ tcp: { destinationPort: { number: 80 } } }],
      [{ udp: { destinationPort: { range: { start: 53, end: 5353 } } } }, { sctp: {} }],
      ...(named ? [[{ destinationNamedPort: rng.pick(["http", "dns", "metrics"]) }]] : []),
    ]);
    return {
      action: rng.pick(["Accept", "Deny", "Pass"]),
      [egress ? "to" : "from"]: peers,
      ...(protocols ? { protocols } : {}),
    };
  };
  const spec: Record<string, unknown> = {
    tier: rng.pick(["Admin", "Baseline"]),
    priority: rng.int(0, 3),
    subject: rng.chance(0.5) ? { namespaces: rng.pick(NS_SELECTORS) } : {
      pods: { namespaceSelector: rng.pick(NS_SELECTORS), podSelector: rng.pick(POD_SELECTORS) },
    },
  };
  if (rng.chance(0.7)) spec.ingress = [...Array(rng.int(1, 2))].map(() => rule(false));
  if (rng.chance(0.7)) spec.egress = [...Array(rng.int(1, 2))].map(() => rule(true));
  // Now and then one that cannot be enforced exactly (fails closed).
  if (rng.chance(0.1)) spec.egress = [{ action: "Deny", to: [{ networks: ["10.0.0.0/33"] }] }];
  const parsed = parseClusterNetworkPolicy({ metadata: { name }, spec });
  if (!parsed.ok) throw new Error(`generated cluster policy ${name}: ${parsed.reason}`);
  scene.cluster.set(name, parsed.entry);
  return `cluster: add ${name}`;
}

function deleteClusterPolicy(rng: Rng, scene: Scene): string {
  const names = [...scene.cluster.keys()];
  if (names.length === 0) return "cluster: none to delete";
  const name = rng.pick(names);
  scene.cluster.delete(name);
  return `cluster: delete ${name}`;
}

/** New node labels (a new map, as the node informer gives). */
function relabelNodes(rng: Rng, scene: Scene): string {
  scene.nodeLabels = new Map(
    scene.world.nodes.map((n) => [n.name, { role: rng.pick(["infra", "worker"]) }]),
  );
  return "nodes: relabelled";
}

/** A pod deleted and created again on another node, its addresses kept. */
function movePod(rng: Rng, world: World): string {
  const keys = [...world.pods.keys()];
  if (keys.length === 0) return "move: no pod";
  const key = rng.pick(keys), pod = world.pods.get(key)!;
  const node = rng.pick(world.nodes).name;
  world.pods.delete(key);
  world.pods.set(key, { ...pod, node });
  return `move: ${key} to ${node}`;
}

/** Objects replaced by equal copies (a resync, a status change policy does not read). */
function copyObjects(rng: Rng, world: World): string {
  for (const [key, pod] of world.pods) {
    if (rng.chance(0.5)) world.pods.set(key, { ...pod, labels: { ...pod.labels } });
  }
  for (const [name, ns] of world.namespaces) {
    if (ns && rng.chance(0.5)) world.namespaces.set(name, { ...ns, labels: { ...ns.labels } });
  }
  return "copy: pods and namespaces";
}

/** Many pods relabelled at once (a rollout): past the small limits, the compilers start over. */
function bulkRelabel(rng: Rng, world: World): string {
  const app = rng.pick(["web", "db", "api"]);
  let n = 0;
  for (const [key, pod] of world.pods) {
    if (!rng.chance(0.6)) continue;
    world.pods.set(key, { ...pod, labels: { ...pod.labels, app } });
    n++;
  }
  return `bulk: ${n} pods to app=${app}`;
}
