// parseNamespace (lib/kube/namespace.ts): a v1.Namespace's name and labels.
import { parseNamespace } from "../../../lib/kube/namespace.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("parseNamespace() reads the name and labels of a real v1.Namespace", () => {
  const ns = {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: {
      name: "x",
      resourceVersion: "812",
      labels: { "kubernetes.io/metadata.name": "x", ns: "x" },
    },
    spec: { finalizers: ["kubernetes"] },
    status: { phase: "Active" },
  };
  assertEquals(parseNamespace(ns), {
    ok: true,
    namespace: { name: "x", labels: { "kubernetes.io/metadata.name": "x", ns: "x" } },
  });
});

Deno.test("parseNamespace() gives a namespace without labels none", () => {
  assertEquals(parseNamespace({ metadata: { name: "y" } }), {
    ok: true,
    namespace: { name: "y", labels: {} },
  });
});

Deno.test("parseNamespace() is not ok without a name or with labels of the wrong type", () => {
  assertEquals(parseNamespace({ metadata: {} }), {
    ok: false,
    key: "?",
    reason: "namespace object has no metadata.name",
  });
  assertEquals(parseNamespace({ metadata: { name: "z", labels: ["a"] } }), {
    ok: false,
    key: "z",
    reason: 'metadata.labels: want an object, got ["a"]',
  });
  assertEquals(parseNamespace(null), {
    ok: false,
    key: "?",
    reason: "namespace: want an object, got null",
  });
});
