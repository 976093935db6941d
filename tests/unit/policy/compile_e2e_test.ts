// compilePolicies() against the upstream e2e suite's cases (kubernetes test/e2e/network/netpol,
// network_policy.go): namespaces x, y, z with pods a, b, c, the whole 9×9 truth table read off
// the compiled plan as the kernel reads it, for the protocol and port each case probes.
import { addressOf, checkTable, e2eCluster, nameOf, nsOf, policy, stateOf } from "./fixtures.ts";
import { assertEquals } from "../../harness/assert.ts";
import { compilePolicies } from "../../../lib/policy/compile.ts";
import { truthTableDiff } from "./fixtures.ts";

const TCP80 = { protocol: "TCP" as const, port: 80 };
const TCP81 = { protocol: "TCP" as const, port: 81 };
const allow = () => true;

Deno.test("compilePolicies() default-deny-ingress isolates every pod of the namespace", () => {
  const deny = policy("x/deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] });
  assertEquals(checkTable([deny], TCP80, (_f, to) => nsOf(to) !== "x"), []);
});

Deno.test("compilePolicies() default-deny-all blocks both directions of the namespace", () => {
  const deny = policy("x/deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] });
  assertEquals(checkTable([deny], TCP80, (f, to) => nsOf(f) !== "x" && nsOf(to) !== "x"), []);
});

Deno.test("compilePolicies() default-deny-egress leaves ingress open", () => {
  const deny = policy("x/deny-egress", { podSelector: {}, policyTypes: ["Egress"] });
  assertEquals(checkTable([deny], TCP80, (f) => nsOf(f) !== "x"), []);
});

Deno.test("compilePolicies() podSelector alone selects pods of the policy's namespace only", () => {
  const p = policy("x/x-a-allows-x-b", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }],
  });
  assertEquals(checkTable([p], TCP80, (f, to) => to !== "x/a" || f === "x/b"), []);
});

Deno.test("compilePolicies() an allow policy opens one target of a default-deny namespace", () => {
  const deny = policy("x/deny-all", { podSelector: {}, policyTypes: ["Ingress"] });
  const open = policy("x/allow-all-to-a", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ podSelector: {}, namespaceSelector: {} }] }],
  });
  assertEquals(checkTable([deny, open], TCP80, (_f, to) => nsOf(to) !== "x" || to === "x/a"), []);
});

Deno.test("compilePolicies() an empty namespaceSelector selects pods of every namespace", () => {
  const p = policy("x/allow-from-another-ns", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: {} } }] }],
  });
  assertEquals(checkTable([p], TCP80, allow), []);
});

Deno.test("compilePolicies() namespaceSelector alone selects every pod of matching namespaces", () => {
  const p = policy("x/allow-client-a-via-ns-selector", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  assertEquals(checkTable([p], TCP80, (f, to) => to !== "x/a" || nsOf(f) === "y"), []);
});

Deno.test("compilePolicies() selects pods by matchExpressions In", () => {
  const p = policy("x/x-a-allows-x-b", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{
        podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["b"] }] },
      }],
    }],
  });
  assertEquals(checkTable([p], TCP80, (f, to) => to !== "x/a" || f === "x/b"), []);
});

Deno.test("compilePolicies() selects namespaces by matchExpressions In", () => {
  const p = policy("x/allow-ns-y-match-selector", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{
        namespaceSelector: {
          matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["y"] }],
        },
      }],
    }],
  });
  assertEquals(checkTable([p], TCP80, (f, to) => to !== "x/a" || nsOf(f) === "y"), []);
});

Deno.test("compilePolicies() two peers are OR: NotIn namespaces or a pod of its own", () => {
  const p = policy("x/allow-ns-y-match-selector", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [
        {
          namespaceSelector: {
            matchExpressions: [{
              key: "kubernetes.io/metadata.name",
              operator: "NotIn",
              values: ["x"],
            }],
          },
        },
        { podSelector: { matchLabels: { pod: "b" } } },
      ],
    }],
  });
  assertEquals(
    checkTable([p], TCP80, (f, to) => to !== "x/a" || nsOf(f) !== "x" || f === "x/b"),
    [],
  );
});

Deno.test("compilePolicies() both selectors in one peer are AND", () => {
  const p = policy("x/allow-ns-y-podselector-and-nsselector", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{
        namespaceSelector: {
          matchExpressions: [{
            key: "kubernetes.io/metadata.name",
            operator: "NotIn",
            values: ["x"],
          }],
        },
        podSelector: { matchLabels: { pod: "b" } },
      }],
    }],
  });
  assertEquals(
    checkTable([p], TCP80, (f, to) => to !== "x/a" || f === "y/b" || f === "z/b"),
    [],
  );
});

Deno.test("compilePolicies() combines Exists and DoesNotExist in one selector", () => {
  // Only pods with a label "pod" and without "ns" match: every pod, since pods carry no "ns".
  const every = policy("x/exists", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{
        namespaceSelector: {},
        podSelector: {
          matchExpressions: [
            { key: "pod", operator: "Exists" },
            { key: "ns", operator: "DoesNotExist" },
          ],
        },
      }],
    }],
  });
  assertEquals(checkTable([every], TCP80, allow), []);
  // Namespaces with label ns and without kubernetes.io/metadata.name: none.
  const none = policy("x/none", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{
        namespaceSelector: {
          matchExpressions: [
            { key: "ns", operator: "Exists" },
            { key: "kubernetes.io/metadata.name", operator: "DoesNotExist" },
          ],
        },
      }],
    }],
  });
  assertEquals(checkTable([none], TCP80, (_f, to) => to !== "x/a"), []);
});

Deno.test("compilePolicies() allows only the listed port, per protocol", () => {
  const p = policy("x/allow-client-a-via-ns-selector", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }],
      ports: [{ port: 81, protocol: "TCP" }],
    }],
  });
  assertEquals(checkTable([p], TCP81, (f, to) => to !== "x/a" || nsOf(f) === "y"), []);
  assertEquals(checkTable([p], TCP80, (_f, to) => to !== "x/a"), []);
  assertEquals(checkTable([p], { protocol: "UDP", port: 81 }, (_f, to) => to !== "x/a"), []);
});

Deno.test("compilePolicies() stacked policies are a union", () => {
  const on = (port: number) =>
    policy(`x/allow-${port}`, {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port }] }],
    });
  const fromY = (f: string, to: string) => to !== "x/a" || nsOf(f) === "y";
  assertEquals(checkTable([on(81)], TCP80, (_f, to) => to !== "x/a"), []);
  assertEquals(checkTable([on(81), on(80)], TCP80, fromY), []);
  assertEquals(checkTable([on(81), on(80)], TCP81, fromY), []);
});

Deno.test("compilePolicies() an allow-all ingress rule wins over a narrower policy", () => {
  const port80 = policy("x/allow-ingress-port-80", {
    podSelector: {},
    ingress: [{ ports: [{ port: 80 }] }],
  });
  const all = policy("x/allow-ingress", { podSelector: {}, ingress: [{}] });
  assertEquals(checkTable([port80], TCP81, (_f, to) => nsOf(to) !== "x"), []);
  assertEquals(checkTable([port80, all], TCP81, allow), []);
});

Deno.test("compilePolicies() an allow-all egress rule wins over a narrower policy", () => {
  const port80 = policy("x/allow-egress-port-80", {
    podSelector: {},
    policyTypes: ["Egress"],
    egress: [{ ports: [{ port: 80 }] }],
  });
  const all = policy("x/allow-egress", { podSelector: {}, policyTypes: ["Egress"], egress: [{}] });
  assertEquals(checkTable([port80], TCP81, (f) => nsOf(f) !== "x"), []);
  assertEquals(checkTable([port80, all], TCP81, allow), []);
});

Deno.test("compilePolicies() resolves an ingress named port on the target's container ports", () => {
  const p = policy("x/allow-all", {
    podSelector: {},
    ingress: [{ ports: [{ port: "serve-81-tcp" }] }],
  });
  assertEquals(checkTable([p], TCP81, allow), []);
  assertEquals(checkTable([p], TCP80, (_f, to) => nsOf(to) !== "x"), []);
  // The name is bound to its protocol: serve-81-tcp does not open UDP 81.
  assertEquals(checkTable([p], { protocol: "UDP", port: 81 }, (_f, to) => nsOf(to) !== "x"), []);
  // Asked for on UDP, a TCP container port of that name resolves to nothing.
  const udp = policy("x/udp", {
    podSelector: {},
    ingress: [{ ports: [{ port: "serve-81-tcp", protocol: "UDP" }] }],
  });
  for (const protocol of ["TCP", "UDP"] as const) {
    assertEquals(checkTable([udp], { protocol, port: 81 }, (_f, to) => nsOf(to) !== "x"), []);
  }
});

Deno.test("compilePolicies() allows an ingress named port from one namespace only", () => {
  const p = policy("x/allow-client-a-via-ns-selector-80", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }],
      ports: [{ port: "serve-80-tcp", protocol: "TCP" }],
    }],
  });
  assertEquals(checkTable([p], TCP80, (f, to) => to !== "x/a" || nsOf(f) === "y"), []);
  assertEquals(checkTable([p], TCP81, (_f, to) => to !== "x/a"), []);
});

Deno.test("compilePolicies() resolves an egress named port on each destination pod", () => {
  const p = policy("x/allow-egress", {
    podSelector: {},
    policyTypes: ["Egress"],
    egress: [{ ports: [{ port: "serve-80-tcp" }] }],
  });
  assertEquals(checkTable([p], TCP80, allow), []);
  assertEquals(checkTable([p], TCP81, (f) => nsOf(f) !== "x"), []);
});

Deno.test("compilePolicies() isolates egress of the selected pod only", () => {
  const p = policy("x/deny-egress-pod-a", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
  });
  assertEquals(checkTable([p], TCP80, (f) => f !== "x/a"), []);
});

Deno.test("compilePolicies() enforces Ingress and Egress of one policy together", () => {
  const p = policy("x/allow-client-a-via-pod-selector", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress", "Ingress"],
    ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }],
    egress: [{ ports: [{ port: 80 }] }],
  });
  assertEquals(checkTable([p], TCP80, (f, to) => to !== "x/a" || f === "x/b"), []);
  assertEquals(
    checkTable([p], TCP81, (f, to) => f !== "x/a" && (to !== "x/a" || f === "x/b")),
    [],
  );
});

Deno.test("compilePolicies() denies on the client's egress even when the server allows", () => {
  const egress = policy("x/allow-to-ns-y-pod-a", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{
      to: [{
        namespaceSelector: { matchLabels: { ns: "y" } },
        podSelector: { matchLabels: { pod: "a" } },
      }],
    }],
  });
  const fromXa = {
    from: [{
      namespaceSelector: { matchLabels: { ns: "x" } },
      podSelector: { matchLabels: { pod: "a" } },
    }],
  };
  const ya = policy("y/allow-from-xa-on-ya", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [fromXa],
  });
  const yb = policy("y/allow-from-xa-on-yb", {
    podSelector: { matchLabels: { pod: "b" } },
    ingress: [fromXa],
  });
  const expected = (f: string, to: string) => {
    if (f === "x/a") return to === "y/a";
    return to !== "y/a" && to !== "y/b";
  };
  assertEquals(checkTable([egress, ya, yb], TCP80, expected), []);
});

Deno.test("compilePolicies() a protocol without port allows every port of that protocol", () => {
  const p = policy("x/allow-ingress-by-proto", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ ports: [{ protocol: "TCP" }] }],
  });
  assertEquals(checkTable([p], TCP80, allow), []);
  assertEquals(checkTable([p], { protocol: "TCP", port: 65535 }, allow), []);
  assertEquals(checkTable([p], { protocol: "UDP", port: 80 }, (_f, to) => to !== "x/a"), []);
});

Deno.test("compilePolicies() never takes protocol SCTP for TCP", () => {
  const deny = policy("x/deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] });
  const sctp = policy("x/allow-only-sctp-ingress-on-port-81", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ ports: [{ port: 81, protocol: "SCTP" }] }],
  });
  assertEquals(checkTable([deny, sctp], TCP81, (_f, to) => nsOf(to) !== "x"), []);
  assertEquals(
    checkTable(
      [deny, sctp],
      { protocol: "SCTP", port: 81 },
      (_f, to) => nsOf(to) !== "x" || to === "x/a",
    ),
    [],
  );
});

Deno.test("compilePolicies() allows egress to a server's /32 ipBlock", () => {
  const state = e2eCluster();
  const p = policy("x/allow-client-a-via-cidr-egress-rule", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{ to: [{ ipBlock: { cidr: `${addressOf(state, "y/b")}/32` } }] }],
  });
  assertEquals(checkTable([p], TCP80, (f, to) => f !== "x/a" || to === "y/b"), []);
});

Deno.test("compilePolicies() an ipBlock except removes a pod from a wide block", () => {
  const state = e2eCluster();
  const xb = `${addressOf(state, "x/b")}/32`;
  const wide = policy("x/allow-client-a-via-cidr-egress-rule", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{ to: [{ ipBlock: { cidr: "10.0.0.0/8", except: [xb] } }] }],
  });
  assertEquals(checkTable([wide], TCP80, (f, to) => !(f === "x/a" && to === "x/b")), []);
  // A second policy allowing the excepted address is a union: x/b is reachable again.
  const exact = policy("x/allow-xb", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{ to: [{ ipBlock: { cidr: xb } }] }],
  });
  assertEquals(checkTable([wide, exact], TCP80, allow), []);
});

Deno.test("compilePolicies() allows an endPort range and nothing past it", () => {
  const p = policy("x/range", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{ ports: [{ protocol: "TCP", port: 79, endPort: 80 }] }],
  });
  assertEquals(checkTable([p], TCP80, allow), []);
  assertEquals(checkTable([p], { protocol: "TCP", port: 79 }, allow), []);
  assertEquals(checkTable([p], TCP81, (f) => f !== "x/a"), []);
});

Deno.test("compilePolicies() applies an ipBlock to its own family only (dual-stack)", () => {
  const v4Only = policy("x/from-y-v4", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ ipBlock: { cidr: "10.0.2.0/24" } }] }],
  });
  const fromY = (f: string, to: string) => to !== "x/a" || nsOf(f) === "y";
  assertEquals(checkTable([v4Only], { ...TCP80, family: 4 }, fromY), []);
  assertEquals(checkTable([v4Only], { ...TCP80, family: 6 }, (_f, to) => to !== "x/a"), []);
  const both = policy("x/from-y-v4-v6", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{ ipBlock: { cidr: "10.0.2.0/24" } }, { ipBlock: { cidr: "fd00::2:0/112" } }],
    }],
  });
  assertEquals(checkTable([both], { ...TCP80, family: 6 }, fromY), []);
});

Deno.test("compilePolicies() selector peers match both families of a pod", () => {
  const p = policy("x/from-y", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
  });
  const fromY = (f: string, to: string) => to !== "x/a" || nsOf(f) === "y";
  assertEquals(checkTable([p], { ...TCP80, family: 6 }, fromY), []);
});

Deno.test("compilePolicies() follows a relabelled pod and a relabelled namespace", () => {
  const p = policy("x/allow-from-updated", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [
        { namespaceSelector: { matchLabels: { ns2: "updated" } } },
        { podSelector: { matchLabels: { pod2: "updated" } } },
      ],
    }],
  });
  const before = e2eCluster([p]);
  assertEquals(
    truthTableDiff(before, compilePolicies(before), TCP80, (_f, to) => to !== "x/a"),
    [],
  );
  const pods = new Map(before.pods);
  pods.set("x/b", { ...pods.get("x/b")!, labels: { pod: "b", pod2: "updated" } });
  const namespaces = new Map(before.namespaces);
  namespaces.set("y", { name: "y", labels: { ...namespaces.get("y")!.labels, ns2: "updated" } });
  const after = { ...before, pods, namespaces };
  const expected = (f: string, to: string) => to !== "x/a" || f === "x/b" || nsOf(f) === "y";
  assertEquals(truthTableDiff(after, compilePolicies(after), TCP80, expected), []);
});

Deno.test("compilePolicies() gives pods of a namespace with no Namespace object no labels", () => {
  const base = e2eCluster();
  const state = stateOf({
    pods: [...base.pods.values()],
    namespaces: [...base.namespaces.values()].filter((n) => n.name !== "z"),
  });
  const notInX = policy("x/not-in-x", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{
      from: [{
        namespaceSelector: { matchExpressions: [{ key: "ns", operator: "NotIn", values: ["x"] }] },
      }],
    }],
  });
  const withNs = policy("x/with-ns", {
    podSelector: { matchLabels: { pod: "b" } },
    ingress: [{
      from: [{ namespaceSelector: { matchExpressions: [{ key: "ns", operator: "Exists" }] } }],
    }],
  });
  const withPolicies = {
    ...state,
    policies: new Map([["x/not-in-x", notInX], ["x/with-ns", withNs]]),
  };
  const expected = (f: string, to: string) => {
    if (to === "x/a") return nsOf(f) !== "x"; // z has no labels: NotIn holds
    if (to === "x/b") return nsOf(f) !== "z"; // z has no labels: Exists fails
    return true;
  };
  assertEquals(truthTableDiff(withPolicies, compilePolicies(withPolicies), TCP80, expected), []);
});

Deno.test("compilePolicies() a policy it cannot read isolates its targets and allows nothing", () => {
  const broken = policy("x/broken", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/33" } }] }],
  });
  assertEquals(checkTable([broken], TCP80, (_f, to) => to !== "x/a"), []);
  // It takes nothing away from what another policy allows (policies are a union).
  const open = policy("x/open", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{}] });
  assertEquals(checkTable([broken, open], TCP80, allow), []);
});

Deno.test("compilePolicies() policies in one namespace never select pods of another", () => {
  const deny = policy("y/deny-all", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Ingress"],
  });
  assertEquals(checkTable([deny], TCP80, (_f, to) => to !== "y/a"), []);
  assertEquals(nameOf("y/a"), "a");
});
