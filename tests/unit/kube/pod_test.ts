// parsePod (lib/kube/pod.ts): the fields NetworkPolicy reads from a v1.Pod.
import { parsePod } from "../../../lib/kube/pod.ts";
import { assertEquals } from "../../harness/assert.ts";

// Trimmed from `kubectl get pod -o json` of an e2e-style server pod (dual-stack kind cluster).
const server = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    namespace: "x",
    name: "a",
    uid: "0f1c7e2a-5b1d-4d55-9f43-6a1d0c3a9b10",
    resourceVersion: "90210",
    labels: { pod: "a" },
  },
  spec: {
    nodeName: "kind-worker",
    containers: [
      {
        name: "cont-80-tcp",
        image: "registry.k8s.io/e2e-test-images/agnhost:2.53",
        ports: [{ name: "serve-80-tcp", containerPort: 80, protocol: "TCP" }],
      },
      {
        name: "cont-80-udp",
        ports: [{ name: "serve-80-udp", containerPort: 80, protocol: "UDP" }],
      },
      {
        name: "cont-81-sctp",
        ports: [{ name: "serve-81-sctp", containerPort: 81, protocol: "SCTP" }],
      },
    ],
  },
  status: {
    phase: "Running",
    podIP: "10.244.1.5",
    podIPs: [{ ip: "10.244.1.5" }, { ip: "fd00:10:244:1::5" }],
  },
};

Deno.test("parsePod() reads labels, node, addresses and named ports of a real v1.Pod", () => {
  assertEquals(parsePod(server), {
    ok: true,
    pod: {
      namespace: "x",
      name: "a",
      labels: { pod: "a" },
      node: "kind-worker",
      ips: ["10.244.1.5", "fd00:10:244:1::5"],
      hostNetwork: false,
      ports: [
        { name: "serve-80-tcp", port: 80, protocol: "TCP" },
        { name: "serve-80-udp", port: 80, protocol: "UDP" },
        { name: "serve-81-sctp", port: 81, protocol: "SCTP" },
      ],
    },
  });
});

Deno.test("parsePod() writes addresses canonically, IPv4 first, each once", () => {
  const pod = {
    ...server,
    status: {
      podIPs: [{ ip: "FD00:10:244:1:0:0:0:5" }, { ip: "10.244.1.5" }, { ip: "10.244.1.5" }],
    },
  };
  const parsed = parsePod(pod);
  assertEquals(parsed.ok && parsed.pod.ips, ["10.244.1.5", "fd00:10:244:1::5"]);
});

Deno.test("parsePod() falls back to status.podIP and has no addresses before one is given", () => {
  const single = parsePod({ ...server, status: { podIP: "10.244.2.9" } });
  assertEquals(single.ok && single.pod.ips, ["10.244.2.9"]);
  const pending = parsePod({ ...server, status: { phase: "Pending" } });
  assertEquals(pending.ok && pending.pod.ips, []);
  const noStatus = parsePod({ metadata: server.metadata, spec: server.spec });
  assertEquals(noStatus.ok && noStatus.pod.ips, []);
});

Deno.test("parsePod() gives a Succeeded or Failed pod no addresses (they may be reused)", () => {
  for (const phase of ["Succeeded", "Failed"]) {
    const parsed = parsePod({ ...server, status: { ...server.status, phase } });
    assertEquals(parsed.ok && parsed.pod.ips, [], phase);
  }
});

Deno.test("parsePod() reads hostNetwork and defaults node and labels to empty", () => {
  const parsed = parsePod({
    metadata: { namespace: "kube-system", name: "mycni-xyz" },
    spec: { hostNetwork: true },
    status: { podIPs: [{ ip: "192.0.2.11" }] },
  });
  assertEquals(parsed, {
    ok: true,
    pod: {
      namespace: "kube-system",
      name: "mycni-xyz",
      labels: {},
      node: "",
      ips: ["192.0.2.11"],
      hostNetwork: true,
      ports: [],
    },
  });
});

Deno.test("parsePod() defaults a port's protocol to TCP and skips ports it cannot use", () => {
  const parsed = parsePod({
    ...server,
    spec: {
      containers: [{
        ports: [
          { name: "http", containerPort: 8080 },
          { name: "icmp-ish", containerPort: 1, protocol: "ICMP" },
          { name: "lower", containerPort: 53, protocol: "udp" },
          { name: "nonum" },
          { name: "zero", containerPort: 0 },
          { containerPort: 9090 },
        ],
      }, { name: "no-ports" }],
    },
  });
  assertEquals(parsed.ok && parsed.pod.ports, [
    { name: "http", port: 8080, protocol: "TCP" },
    { name: "", port: 9090, protocol: "TCP" },
  ]);
});

Deno.test("parsePod() is not ok without namespace or name, and says which", () => {
  assertEquals(parsePod({ metadata: { name: "a" } }), {
    ok: false,
    key: "?/a",
    reason: "pod object has no metadata.namespace",
  });
  assertEquals(parsePod({ metadata: { namespace: "x" } }), {
    ok: false,
    key: "x/?",
    reason: "pod object has no metadata.name",
  });
  assertEquals(parsePod("pod"), {
    ok: false,
    key: "?/?",
    reason: 'pod: want an object, got "pod"',
  });
});

Deno.test("parsePod() names the field of a wrong type or an unreadable address", () => {
  const cases: [unknown, string][] = [
    [{ ...server, metadata: { ...server.metadata, labels: { pod: 7 } } }, 'metadata.labels["pod"]'],
    [{ ...server, spec: { ...server.spec, hostNetwork: "yes" } }, "spec.hostNetwork"],
    [{ ...server, spec: { ...server.spec, nodeName: 3 } }, "spec.nodeName"],
    [{ ...server, spec: { containers: [{ ports: "80" }] } }, "spec.containers[0].ports"],
    [
      { ...server, status: { podIPs: [{ ip: "10.244.1.5" }, { ip: "10.244.1.500" }] } },
      'status.podIPs[1].ip: "10.244.1.500" is not an IP address',
    ],
    [{ ...server, status: { podIP: "nope" } }, 'status.podIP: "nope" is not an IP address'],
  ];
  for (const [obj, field] of cases) {
    const parsed = parsePod(obj);
    assertEquals(parsed.ok, false, field);
    if (!parsed.ok) {
      assertEquals(parsed.key, "x/a");
      assertEquals(parsed.reason.startsWith(field), true, `${parsed.reason} names ${field}`);
    }
  }
});
