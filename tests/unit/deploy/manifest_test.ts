// deploy/mycni.yaml without a cluster: every object against the Kubernetes API schema, then the
// promises the DaemonSet makes to the agent (flags, probes, mounts, RBAC) against each other.
// deno-lint-ignore-file no-import-prefix -- test-only npm packages, pinned where they are used
import assert from "node:assert/strict";
import { posix } from "node:path";
import { ObjectSerializer } from "npm:@kubernetes/client-node@2.0.1/dist/gen/models/ObjectSerializer.js";
import { DaemonSet } from "npm:kubernetes-models@5.1.0/apps/v1/DaemonSet";
import { ClusterRole } from "npm:kubernetes-models@5.1.0/rbac.authorization.k8s.io/v1/ClusterRole";
import { ClusterRoleBinding } from "npm:kubernetes-models@5.1.0/rbac.authorization.k8s.io/v1/ClusterRoleBinding";
import { ServiceAccount } from "npm:kubernetes-models@5.1.0/v1/ServiceAccount";
import { parseAgentArgs } from "../../../lib/node/options.ts";
import {
  agentInvocation,
  agentPod,
  findObject,
  type KubeObject,
  loadManifest,
  ROOT,
} from "./deploy_files.ts";

// Schemas: kubernetes-models (ajv validators generated from the Kubernetes 1.36 OpenAPI spec).
// The OpenAPI spec does not close objects, so a misspelt field passes it; the API server's strict
// field validation (kubectl's default) would reject it. The second check catches those: the
// official client's serializer (also generated from the 1.36 spec) keeps only the fields the API
// defines, so whatever a round trip through it loses is a field the API does not know.
type Validatable = { validate(): void };
function schemaOf<T>(model: new (data: T) => Validatable): (obj: unknown) => Validatable {
  return (obj) => new model(obj as T);
}
const SCHEMAS: Record<string, (obj: unknown) => Validatable> = {
  "v1/ServiceAccount": schemaOf(ServiceAccount),
  "rbac.authorization.k8s.io/v1/ClusterRole": schemaOf(ClusterRole),
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": schemaOf(ClusterRoleBinding),
  "apps/v1/DaemonSet": schemaOf(DaemonSet),
};

/** Throws the schema's error for an object, or one naming an apiVersion/kind without schema. */
function validateObject(obj: KubeObject): void {
  const schema = SCHEMAS[`${obj.apiVersion}/${obj.kind}`];
  if (!schema) throw new Error(`No schema for ${obj.apiVersion} ${obj.kind}`);
  schema(obj).validate();
}

/** Paths of fields in `obj` that a round trip through the client's serializer drops. */
function unknownFields(obj: KubeObject): string[] {
  const type = `${obj.apiVersion.split("/").pop()!.toUpperCase()}${obj.kind}`;
  const back = ObjectSerializer.serialize(ObjectSerializer.deserialize(obj, type, ""), type, "");
  const lost: string[] = [];
  const walk = (a: unknown, b: unknown, path: string) => {
    if (a === null || typeof a !== "object") return;
    for (const [key, value] of Object.entries(a)) {
      const there = (b as Record<string, unknown> | undefined)?.[key];
      if (there === undefined) lost.push(`${path}.${key}`);
      else walk(value, there, `${path}.${key}`);
    }
  };
  walk(obj, back, `${obj.kind}/${obj.metadata.name}`);
  return lost;
}

/** Bytes in a memory quantity written with a binary suffix (the only kind the manifest uses). */
function memoryBytes(quantity: string | number | undefined): number {
  const m = /^([0-9]+)(Ki|Mi|Gi)$/.exec(String(quantity));
  if (!m) throw new Error(`Memory quantity "${quantity}" is not <n>Ki, <n>Mi or <n>Gi`);
  return Number(m[1]) * 1024 ** (["Ki", "Mi", "Gi"].indexOf(m[2]) + 1);
}

/**
 * The flags the agent accepts, as `init.ts --help` lists them. The agent runs without write, run
 * or net permissions, so an agent that ignored `--help` and started working would fail at its
 * first step instead of touching this machine.
 */
async function agentFlags(): Promise<Set<string>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--no-lock", "--allow-read", "--allow-env", "init.ts", "--help"],
    cwd: ROOT,
    stdin: "null",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert(out.success, `init.ts --help exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  return new Set(text.match(/--[a-z][a-z0-9-]*/g) ?? []);
}

/** Whether `path` is `dir` or inside it. */
function isWithin(path: string, dir: string): boolean {
  const rel = posix.relative(dir, path);
  return rel === "" || (!rel.startsWith("..") && !posix.isAbsolute(rel));
}

Deno.test("deploy/mycni.yaml holds exactly the ServiceAccount, RBAC and DaemonSet", () => {
  const kinds = loadManifest().map((o) => o.kind).sort();
  assert.deepEqual(kinds, ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "ServiceAccount"]);
});

Deno.test("validateObject() accepts every object of the manifest (Kubernetes 1.36 schema)", () => {
  for (const obj of loadManifest()) validateObject(obj);
});

Deno.test("unknownFields() finds no field the Kubernetes API does not define", () => {
  for (const obj of loadManifest()) assert.deepEqual(unknownFields(obj), [], `${obj.kind} fields`);
});

Deno.test("validateObject() and unknownFields() catch a wrong type and a misspelt field", () => {
  // The checks above are only worth something if they can fail: break a copy and watch them.
  const objects = loadManifest();
  const ds = structuredClone(findObject(objects, "DaemonSet"));
  const spec = (ds.spec as { template: { spec: Record<string, unknown> } }).template.spec;
  spec.hostNetwork = "yes";
  assert.throws(() => validateObject(ds), /hostNetwork must be boolean/);
  spec.hostNetwork = true;
  spec.tolerration = spec.tolerations;
  assert.deepEqual(unknownFields(ds), ["DaemonSet/mycni.spec.template.spec.tolerration"]);
  assert.throws(() => validateObject({ ...ds, apiVersion: "extensions/v1beta1" }), /No schema/);
});

Deno.test("ClusterRole grants only get/list/watch on what the agent watches, bound to the DaemonSet's account", () => {
  const objects = loadManifest();
  const role = new ClusterRole(findObject(objects, "ClusterRole") as never);
  assert.deepEqual(
    role.rules?.map((r) => ({ ...r, verbs: [...r.verbs].sort() })),
    [
      {
        apiGroups: [""],
        resources: ["nodes", "pods", "namespaces"],
        verbs: ["get", "list", "watch"],
      },
      {
        apiGroups: ["networking.k8s.io"],
        resources: ["networkpolicies"],
        verbs: ["get", "list", "watch"],
      },
      {
        apiGroups: ["policy.networking.k8s.io"],
        resources: ["clusternetworkpolicies"],
        verbs: ["get", "list", "watch"],
      },
    ],
  );
  const binding = new ClusterRoleBinding(findObject(objects, "ClusterRoleBinding") as never);
  assert.deepEqual(binding.roleRef, {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "ClusterRole",
    name: role.metadata?.name,
  });
  const account = findObject(objects, "ServiceAccount");
  const { daemonSet, podSpec } = agentPod(objects);
  assert.deepEqual(binding.subjects, [
    { kind: "ServiceAccount", name: account.metadata.name, namespace: account.metadata.namespace },
  ]);
  assert.deepEqual(podSpec.serviceAccountName, account.metadata.name);
  assert.deepEqual(daemonSet.metadata?.namespace, account.metadata.namespace);
});

Deno.test("ClusterRole grants exactly the collections the agent's informers list and watch", async () => {
  const role = new ClusterRole(findObject(loadManifest(), "ClusterRole") as never);
  const granted = (role.rules ?? []).flatMap((r) =>
    (r.apiGroups ?? []).flatMap((g) => (r.resources ?? []).map((res) => `${g}/${res}`))
  ).sort();
  // Every `path: "/api/v1/x"` or `path: "/apis/<group>/<version>/x"` the agent watches.
  const sources = await Promise.all(
    ["lib/node/agent.ts", "lib/kube/node_watch.ts"].map((f) =>
      Deno.readTextFile(new URL(`../../../${f}`, import.meta.url))
    ),
  );
  const watched = sources.join("\n").matchAll(
    /path: "\/(api\/v1|apis\/([^/"]+)\/[^/"]+)\/([a-z]+)"/g,
  );
  const wanted = [...watched].map((m) => `${m[2] ?? ""}/${m[3]}`).sort();
  assert.deepEqual(wanted, [
    "/namespaces",
    "/nodes",
    "/pods",
    "networking.k8s.io/networkpolicies",
    "policy.networking.k8s.io/clusternetworkpolicies",
  ]);
  assert.deepEqual(granted, wanted);
});

Deno.test("DaemonSet runs on every node's host network in kube-system at node-critical priority", () => {
  const { daemonSet, podSpec } = agentPod();
  assert.deepEqual(daemonSet.metadata?.namespace, "kube-system");
  assert.deepEqual(podSpec.hostNetwork, true);
  assert.deepEqual(podSpec.priorityClassName, "system-node-critical");
  // One toleration with no key and no effect tolerates every taint.
  assert.deepEqual(podSpec.tolerations, [{ operator: "Exists" }]);
  assert.deepEqual(daemonSet.spec?.updateStrategy?.type, "RollingUpdate");
  const labels = daemonSet.spec?.template.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(daemonSet.spec?.selector.matchLabels ?? {})) {
    assert.deepEqual(labels[k], v, `template label ${k} matches the selector`);
  }
});

Deno.test("DaemonSet args use only flags the agent accepts, node name from spec.nodeName", async () => {
  const { container, flags } = agentPod();
  const accepted = await agentFlags();
  assert(accepted.has("--node-name"), `init.ts --help lists no --node-name: ${[...accepted]}`);
  for (const [name] of flags) {
    assert(accepted.has(name), `${name} is not a flag of the agent (init.ts --help)`);
  }
  assert.deepEqual(flags.filter(([n]) => n === "--node-name"), [["--node-name", "$(NODE_NAME)"]]);
  const env = container.env?.find((e) => e.name === "NODE_NAME");
  assert.deepEqual(env?.valueFrom?.fieldRef?.fieldPath, "spec.nodeName");
});

Deno.test("parseAgentArgs() takes the DaemonSet's args in a pod, values as the manifest says", () => {
  const { argv, env } = agentInvocation("kind-worker");
  const { flags } = agentPod();
  const value = (name: string) => flags.find(([n]) => n === name)?.[1];
  // What the kubelet adds to every pod's env: the API server's Service.
  const podEnv = { ...env, KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" };
  const opts = parseAgentArgs(argv.slice(1), podEnv);
  assert.equal(opts.nodeName, "kind-worker");
  assert.equal(opts.kube?.url, "https://10.96.0.1:443", "in-cluster API, no --kube-api");
  assert.equal(opts.nodesFile, undefined);
  assert.equal(opts.once, false, "the DaemonSet's agent keeps running");
  assert.equal(opts.uninstall, false);
  for (
    const [flag, got] of [
      ["--cni-bin-dir", opts.cniBinDir],
      ["--cni-conf-dir", opts.cniConfDir],
      ["--cni-data-dir", opts.cniDataDir],
      ["--log-file", opts.logFile],
      ["--agent-socket", opts.agentSocket],
    ] as const
  ) {
    if (value(flag) !== undefined) assert.equal(got, value(flag), flag);
  }
});

Deno.test("DaemonSet probes hit /healthz on the --health-addr host and port", () => {
  const { container, flags } = agentPod();
  const addr = flags.find(([n]) => n === "--health-addr")?.[1] ?? "127.0.0.1:9749";
  const { hostname, port } = new URL(`http://${addr}`);
  for (const probe of [container.readinessProbe, container.livenessProbe]) {
    assert.deepEqual(probe?.httpGet?.path, "/healthz");
    assert.deepEqual(String(probe?.httpGet?.port), port);
    assert.deepEqual(probe?.httpGet?.host, hostname);
  }
});

Deno.test("DaemonSet mounts every path its args name from the same path on the host", () => {
  const { podSpec, container, flags } = agentPod();
  // The conflist hands the data dir and log file to the plugin, which runs on the host: the
  // paths only mean the same thing in both places when each mount is host path = mount path.
  const value = (name: string, fallback: string) =>
    flags.find(([n]) => n === name)?.[1] ?? fallback;
  const paths = [
    value("--cni-bin-dir", "/opt/cni/bin"),
    value("--cni-conf-dir", "/etc/cni/net.d"),
    value("--cni-data-dir", "/var/lib/cni/networks"),
    posix.dirname(value("--log-file", "/var/log/mycni.log")),
    posix.dirname(value("--agent-socket", "/run/mycni/agent.sock")),
    "/run/xtables.lock",
  ];
  for (const path of paths) {
    const mount = container.volumeMounts?.find((m) => isWithin(path, m.mountPath));
    assert(mount, `no volumeMount covers ${path}`);
    assert(!mount.readOnly, `the mount of ${path} is read-only`);
    const volume = podSpec.volumes?.find((v) => v.name === mount.name);
    assert.deepEqual(volume?.hostPath?.path, mount.mountPath, `hostPath behind ${path}`);
  }
  const lock = podSpec.volumes?.find((v) => v.hostPath?.path === "/run/xtables.lock");
  assert.deepEqual(lock?.hostPath?.type, "FileOrCreate");
  // The agent makes the socket; the directory must be there (and shared) before it starts.
  const socketDir = posix.dirname(value("--agent-socket", "/run/mycni/agent.sock"));
  const sockets = podSpec.volumes?.find((v) => v.hostPath?.path === socketDir);
  assert.deepEqual(sockets?.hostPath?.type, "DirectoryOrCreate", `hostPath ${socketDir}`);
});

Deno.test("DaemonSet is privileged or has exactly NET_ADMIN, NET_RAW and SYS_ADMIN", () => {
  const { securityContext: sc } = agentPod().container;
  if (sc?.privileged) return;
  assert.deepEqual([...(sc?.capabilities?.add ?? [])].sort(), [
    "NET_ADMIN",
    "NET_RAW",
    "SYS_ADMIN",
  ]);
});

Deno.test("DaemonSet requests and limits CPU and memory, above the agent's 64 MiB target", () => {
  const { resources } = agentPod().container;
  for (const key of ["cpu", "memory"]) {
    assert(resources?.requests?.[key], `requests.${key} is set`);
    assert(resources?.limits?.[key], `limits.${key} is set`);
  }
  const limit = memoryBytes(resources?.limits?.memory);
  assert(limit >= 64 * 1024 ** 2, "the memory limit leaves the agent its 64 MiB");
  assert(memoryBytes(resources?.requests?.memory) <= limit, "memory request within the limit");
});

Deno.test("agentInvocation() gives the agent's argv with NODE_NAME expanded", () => {
  const { argv, env, hostPaths } = agentInvocation("kind-worker2");
  assert.equal(argv[0], "/usr/local/bin/mycni-init");
  assert.ok(argv.includes("--node-name=kind-worker2"));
  assert.ok(!argv.some((a) => a.includes("$(")), "no unexpanded $(VAR) left");
  assert.deepEqual(env, { NODE_NAME: "kind-worker2" });
  assert.ok(hostPaths.includes("/opt/cni/bin"));
});
