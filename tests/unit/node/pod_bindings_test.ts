import { parseIp } from "../../../lib/ip/cidr.ts";
import {
  applyBindings,
  attachmentKey,
  bindingOf,
  bindingsFromAllocations,
  bindPod,
  ISOLATED_NAMESPACE,
  isPodKnown,
  type PodBinding,
  type PodBindings,
  podKeyOf,
  podsWithBindings,
  releasePod,
} from "../../../lib/node/pod_bindings.ts";
import { compilePolicies } from "../../../lib/policy/compile.ts";
import { allowRuleMatches } from "../../../lib/policy/match.ts";
import { policyObjects } from "../../../lib/policy/nft_rules.ts";
import type { PolicyPlan } from "../../../lib/policy/plan.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { namespace, pod, policy, stateOf } from "../policy/fixtures.ts";

const web = (ips: string[], containerId = "c-web"): PodBinding => ({
  containerId,
  ifname: "eth0",
  pod: { namespace: "x", name: "web" },
  ips,
});

function bound(...bindings: PodBinding[]): PodBindings {
  return bindings.reduce<PodBindings>((acc, b) => bindPod(acc, b), new Map());
}

/** Whether `plan` lets `from` reach `to` on TCP 80, egress on the source, ingress on the dest. */
function allowed(plan: PolicyPlan, from: string, fromIp: string, to: string, toIp: string) {
  const flow = { protocol: "TCP" as const, port: 80 };
  const t = new Map(plan.targets.map((x) => [x.pod, x]));
  const ok = (key: string, dir: "ingress" | "egress", peer: string) => {
    const d = t.get(key)?.[dir];
    return d === undefined ||
      d.allow.some((r) => allowRuleMatches(r, { peer: parseIp(peer), ...flow }));
  };
  return ok(from, "egress", toIp) && ok(to, "ingress", fromIp);
}

Deno.test("bindingOf() keeps the request's attachment, pod and addresses, IPv4 first", () => {
  const b = bindingOf({
    version: 1,
    kind: "admit",
    containerId: "c1",
    ifname: "eth0",
    ips: ["fd00::5", "10.244.1.5"],
  });
  assertEquals(b, { containerId: "c1", ifname: "eth0", ips: ["10.244.1.5", "fd00::5"] });
});

Deno.test("bindPod() replaces the attachment's binding and takes its addresses from others", () => {
  const old = web(["10.244.1.5", "fd00::5"], "c-old");
  let b = bound(old, web(["10.244.1.6"]));
  // A repeated ADD of c-web gets other addresses: only the new ones stay bound to it.
  b = bindPod(b, web(["10.244.1.7"]));
  assertEquals([...b.keys()], [attachmentKey("c-old", "eth0"), attachmentKey("c-web", "eth0")]);
  assertEquals(b.get("c-web@eth0")?.ips, ["10.244.1.7"]);
  // IPAM handed c-old's v4 address to a new pod (c-old's DEL never reached the agent).
  b = bindPod(b, { containerId: "c-new", ifname: "eth0", ips: ["10.244.1.5"] });
  assertEquals(b.get("c-old@eth0")?.ips, ["fd00::5"]);
  b = bindPod(b, { containerId: "c-new2", ifname: "eth0", ips: ["fd00::5"] });
  assertEquals(b.has("c-old@eth0"), false, "a binding left with no address is dropped");
});

Deno.test("releasePod() drops one attachment and is a no-op when it is gone", () => {
  const b = bound(web(["10.244.1.6"]), web(["10.244.1.8"], "c-other"));
  const after = releasePod(b, "c-web", "eth0");
  assertEquals([...after.keys()], ["c-other@eth0"]);
  assert(releasePod(after, "c-web", "eth0") === after, "a repeated release changes nothing");
  assertEquals([...releasePod(after, "c-other", "net1").keys()], ["c-other@eth0"]);
  assertEquals(b.size, 2, "the input map is not changed");
});

Deno.test("podsWithBindings() gives a pod on this node its bound addresses before the API does", () => {
  const api = new Map([["x/web", pod("x/web", { node: "n1", ips: [] })]]);
  const pods = podsWithBindings(api, bound(web(["10.244.1.6", "fd00::6"])), "n1");
  assertEquals(pods.get("x/web")?.ips, ["10.244.1.6", "fd00::6"]);
  assertEquals(pods.size, 1);
  // The API's view still says 10.244.1.99 (stale): what ADD bound wins.
  const stale = new Map([["x/web", pod("x/web", { node: "n1", ips: ["10.244.1.99"] })]]);
  assertEquals(podsWithBindings(stale, bound(web(["10.244.1.6"])), "n1").get("x/web")?.ips, [
    "10.244.1.6",
  ]);
});

Deno.test("podsWithBindings() takes a reused address from the terminating pod the API still lists", () => {
  const old = pod("x/old", { node: "n1", ips: ["10.244.1.5", "fd00::5"] });
  const elsewhere = pod("y/far", { node: "n2", ips: ["10.244.2.9"] });
  const api = new Map([["x/old", old], ["x/web", pod("x/web")], ["y/far", elsewhere]]);
  const pods = podsWithBindings(api, bound(web(["10.244.1.5"])), "n1");
  assertEquals(pods.get("x/old")?.ips, ["fd00::5"]);
  assertEquals(pods.get("x/web")?.ips, ["10.244.1.5"]);
  assert(pods.get("y/far") === elsewhere, "an untouched pod keeps its object");
  assertEquals(api.get("x/old")?.ips, ["10.244.1.5", "fd00::5"], "the input is not changed");
});

Deno.test("podsWithBindings() isolates a pod until known: unknown Pod, no CNI_ARGS, other node", () => {
  const api = new Map([["x/moved", pod("x/moved", { node: "n2", ips: ["10.244.2.4"] })]]);
  const b = bound(
    web(["10.244.1.6"]), // x/web: no Pod object yet
    { containerId: "c-anon", ifname: "eth0", ips: ["10.244.1.7"] }, // CNI_ARGS named no pod
    { ...web(["10.244.1.8"], "c-moved"), pod: { namespace: "x", name: "moved" } },
  );
  assertEquals([...b.values()].map((x) => isPodKnown(x, api, "n1")), [false, false, false]);
  const pods = podsWithBindings(api, b, "n1");
  const synthetic = [...pods.values()].filter((p) => p.namespace === ISOLATED_NAMESPACE);
  assertEquals(
    synthetic.map((p) => [p.name, p.ips, p.node, p.labels]),
    [
      ["x_web", ["10.244.1.6"], "n1", {}],
      ["c-anon@eth0", ["10.244.1.7"], "n1", {}],
      ["x_moved", ["10.244.1.8"], "n1", {}],
    ],
  );
  assertEquals(pods.get("x/moved")?.ips, ["10.244.2.4"], "the other node's pod keeps its own");
  for (const binding of b.values()) {
    assertEquals(pods.get(podKeyOf(binding, api, "n1"))?.ips, binding.ips, binding.containerId);
  }
  assert(isPodKnown(web([]), new Map([["x/web", pod("x/web", { node: "" })]]), "n1"));
});

Deno.test("applyBindings() isolates an unknown pod both ways, even with no policy at all", () => {
  const state = stateOf({
    pods: [pod("x/peer", { node: "n1", ips: ["10.244.1.2"] })],
    namespaces: [namespace("x")],
  });
  const b = bound(web(["10.244.1.6"]));
  const applied = applyBindings(state, b, "n1");
  const plan = compilePolicies(applied, { node: "n1" });
  const target = plan.targets.find((t) => t.pod === `${ISOLATED_NAMESPACE}/x_web`);
  assertEquals(target?.ips, ["10.244.1.6"]);
  assertEquals(target?.ingress, { policies: ["mycni:isolated/isolated-until-known"], allow: [] });
  assertEquals(target?.egress, { policies: ["mycni:isolated/isolated-until-known"], allow: [] });
  assertEquals(allowed(plan, "x/peer", "10.244.1.2", target!.pod, "10.244.1.6"), false);
  assertEquals(allowed(plan, target!.pod, "10.244.1.6", "x/peer", "10.244.1.2"), false);
  assertEquals(plan.targets.length, 1, "nobody else becomes a target");
  // What the kernel gets: its address in both verdict maps, jumping to a chain that only drops.
  const objs = policyObjects(plan);
  for (const map of ["ingress4", "egress4"]) {
    const verdict = objs.sets.get(map)?.elements.get("10.244.1.6");
    const chain = verdict?.split("jump ")[1];
    assertEquals(objs.chains.get(chain ?? "")?.rules.at(-1)?.endsWith("drop"), true, map);
    assertEquals(objs.chains.get(chain ?? "")?.rules.length, 1, `${map}: nothing but the drop`);
  }
  // Known pods only: the state's policies are exactly the API's.
  const known = applyBindings(
    state,
    bound({ ...web(["10.244.1.2"]), pod: { namespace: "x", name: "peer" } }),
    "n1",
  );
  assert(known.policies === state.policies);
});

Deno.test("applyBindings() lets a known pod's policies decide as soon as ADD bound it", () => {
  const state = stateOf({
    pods: [
      pod("x/web", { node: "n1", ips: [], labels: { app: "web" } }),
      pod("x/client", { node: "n2", ips: ["10.244.2.3"], labels: { app: "client" } }),
      pod("x/other", { node: "n2", ips: ["10.244.2.4"], labels: { app: "other" } }),
    ],
    namespaces: [namespace("x")],
    policies: [
      policy("x/web-from-client", {
        podSelector: { matchLabels: { app: "web" } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: "client" } } }] }],
      }),
    ],
  });
  // The API has no address for x/web yet: without the binding it is no target at all.
  assertEquals(compilePolicies(state, { node: "n1" }).targets, []);
  const plan = compilePolicies(applyBindings(state, bound(web(["10.244.1.6"])), "n1"), {
    node: "n1",
  });
  assertEquals(plan.targets.map((t) => [t.pod, t.ips]), [["x/web", ["10.244.1.6"]]]);
  assertEquals(podKeyOf(web(["10.244.1.6"]), state.pods, "n1"), "x/web");
  assertEquals(allowed(plan, "x/client", "10.244.2.3", "x/web", "10.244.1.6"), true);
  assertEquals(allowed(plan, "x/other", "10.244.2.4", "x/web", "10.244.1.6"), false);
});

Deno.test("bindingsFromAllocations() groups an attachment's addresses and reads its pod", () => {
  const b = bindingsFromAllocations([
    { ip: "fd00::5", owner: { containerId: "c1", ifname: "eth0", pod: "x/web-0" } },
    { ip: "10.244.1.5", owner: { containerId: "c1", ifname: "eth0", pod: "x/web-0" } },
    { ip: "10.244.1.6", owner: { containerId: "c2", ifname: "eth0" } },
    // host-local's own records, and a pod line that names no namespace.
    { ip: "10.244.1.7", owner: { containerId: "c3", ifname: "", pod: "lonely" } },
    { ip: "not-an-ip", owner: { containerId: "c4", ifname: "eth0" } },
  ]);
  assertEquals([...b.values()], [
    {
      containerId: "c1",
      ifname: "eth0",
      pod: { namespace: "x", name: "web-0" },
      ips: ["10.244.1.5", "fd00::5"],
    },
    { containerId: "c2", ifname: "eth0", ips: ["10.244.1.6"] },
    { containerId: "c3", ifname: "", ips: ["10.244.1.7"] },
  ]);
});
