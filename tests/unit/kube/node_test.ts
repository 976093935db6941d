import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseKubeNode } from "../../../lib/kube/node.ts";
import { nodeObject } from "../../harness/fake_apiserver.ts";

// Trimmed from `kubectl get node kind-worker -o json` (kind v0.24, dual-stack).
const kindWorker = {
  apiVersion: "v1",
  kind: "Node",
  metadata: {
    name: "kind-worker",
    uid: "6d3b1c2a-6a53-4a0e-9c55-0c8b7a0f2d11",
    resourceVersion: "5321",
    labels: { "kubernetes.io/hostname": "kind-worker", "kubernetes.io/os": "linux" },
  },
  spec: {
    podCIDR: "10.244.1.0/24",
    podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
    providerID: "kind://docker/kind/kind-worker",
  },
  status: {
    addresses: [
      { address: "172.18.0.3", type: "InternalIP" },
      { address: "fc00:f853:ccd:e793::3", type: "InternalIP" },
      { address: "kind-worker", type: "Hostname" },
    ],
    conditions: [{ type: "Ready", status: "True" }],
  },
};

Deno.test("parseKubeNode() reads podCIDRs, InternalIPs and labels of a real v1.Node", () => {
  assertEquals(parseKubeNode(kindWorker), {
    ok: true,
    node: {
      name: "kind-worker",
      ips: ["172.18.0.3", "fc00:f853:ccd:e793::3"],
      podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
      labels: { "kubernetes.io/hostname": "kind-worker", "kubernetes.io/os": "linux" },
    },
  });
});

Deno.test("parseKubeNode() reads no labels as none and skips values that are not strings", () => {
  const bare = { ...kindWorker, metadata: { name: "bare" } };
  const none = parseKubeNode(bare);
  assertEquals(none.ok && none.node.labels, {});
  const odd = { ...kindWorker, metadata: { name: "odd", labels: { a: "1", b: 2, c: null } } };
  const parsed = parseKubeNode(odd);
  assertEquals(parsed.ok && parsed.node.labels, { a: "1" });
});

Deno.test("parseKubeNode() falls back to spec.podCIDR", () => {
  const old = { ...kindWorker, spec: { podCIDR: "10.244.7.0/24" } };
  const parsed = parseKubeNode(old);
  assertEquals(parsed.ok && parsed.node.podCIDRs, ["10.244.7.0/24"]);
});

Deno.test("parseKubeNode() skips a node without podCIDR or InternalIP, saying why", () => {
  assertEquals(parseKubeNode({ ...kindWorker, spec: {} }), {
    ok: false,
    name: "kind-worker",
    reason: "no podCIDR allocated yet",
  });
  const noIp = { ...kindWorker, status: { addresses: [{ type: "Hostname", address: "x" }] } };
  assertEquals(parseKubeNode(noIp), {
    ok: false,
    name: "kind-worker",
    reason: "no InternalIP in status.addresses",
  });
  assertEquals(parseKubeNode("nonsense").ok, false);
});

Deno.test("parseKubeNode() reads what the fake API server serves", () => {
  const obj = nodeObject({
    name: "n2",
    ip: "192.0.2.12",
    podCIDRs: ["10.244.2.0/24"],
    labels: { zone: "a" },
  }, 7);
  assertEquals(parseKubeNode(obj), {
    ok: true,
    node: {
      name: "n2",
      ips: ["192.0.2.12"],
      podCIDRs: ["10.244.2.0/24"],
      labels: {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": "n2",
        "kubernetes.io/os": "linux",
        zone: "a",
      },
    },
  });
});
