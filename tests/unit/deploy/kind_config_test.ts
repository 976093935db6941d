// deploy/kind/*.yaml without kind: no schema for kind's config exists as a package, so each file
// is checked field by field against kind's v1alpha4 types, then against the rules kind's
// validation applies and the cluster mycni needs (no default CNI, a pod subnet, two workers).
import assert from "node:assert/strict";
import { parseCidr } from "../../../lib/ip/cidr.ts";
import { parseYamlFile } from "./deploy_files.ts";

/** The type of one config field, as kind's Go types declare it. */
type Field =
  | "string"
  | "boolean"
  | "integer"
  | "string[]"
  | { readonly enum: readonly string[] }
  | { readonly map: "string" | "boolean" }
  | { readonly object: Fields }
  | { readonly list: Fields };
type Fields = Readonly<Record<string, Field>>;

// kind's kind.x-k8s.io/v1alpha4 types, from kubernetes-sigs/kind
// pkg/apis/config/v1alpha4/types.go (Cluster, Node, Networking, Mount, PortMapping, PatchJSON6902),
// with the enum values pkg/internal/apis/config/validate.go accepts. kind decodes the file
// strictly, so a field not in this table is an error there too.
const PATCH_JSON6902: Fields = {
  group: "string",
  version: "string",
  kind: "string",
  patch: "string",
};
const NODE: Fields = {
  role: { enum: ["control-plane", "worker"] },
  image: "string",
  labels: { map: "string" },
  extraMounts: {
    list: {
      containerPath: "string",
      hostPath: "string",
      readOnly: "boolean",
      selinuxRelabel: "boolean",
      propagation: { enum: ["None", "HostToContainer", "Bidirectional"] },
    },
  },
  extraPortMappings: {
    list: {
      containerPort: "integer",
      hostPort: "integer",
      listenAddress: "string",
      protocol: { enum: ["TCP", "UDP", "SCTP"] },
    },
  },
  gpus: "string",
  kubeadmConfigPatches: "string[]",
  kubeadmConfigPatchesJSON6902: { list: PATCH_JSON6902 },
};
const NETWORKING: Fields = {
  ipFamily: { enum: ["ipv4", "ipv6", "dual"] },
  apiServerPort: "integer",
  apiServerAddress: "string",
  podSubnet: "string",
  serviceSubnet: "string",
  disableDefaultCNI: "boolean",
  kubeProxyMode: { enum: ["iptables", "ipvs", "nftables", "none"] },
  dnsSearch: "string[]",
};
const CLUSTER: Fields = {
  kind: { enum: ["Cluster"] },
  apiVersion: { enum: ["kind.x-k8s.io/v1alpha4"] },
  name: "string",
  nodes: { list: NODE },
  networking: { object: NETWORKING },
  featureGates: { map: "boolean" },
  runtimeConfig: { map: "string" },
  kubeadmConfigPatches: "string[]",
  kubeadmConfigPatchesJSON6902: { list: PATCH_JSON6902 },
  containerdConfigPatches: "string[]",
  containerdConfigPatchesJSON6902: "string[]",
};

/** Problems of `value` against `fields`, each naming the path: unknown fields, wrong types. */
function checkFields(value: unknown, fields: Fields, path = ""): string[] {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return [`${path || "the file"} is not a mapping`];
  }
  return Object.entries(value).flatMap(([key, v]) => {
    const field = fields[key];
    return field ? checkField(v, field, `${path}${key}`) : [`${path}${key} is not a kind field`];
  });
}

function checkField(v: unknown, field: Field, path: string): string[] {
  const bad = (want: string) => [`${path} is ${JSON.stringify(v)}, want ${want}`];
  if (field === "string") return typeof v === "string" ? [] : bad("a string");
  if (field === "boolean") return typeof v === "boolean" ? [] : bad("true or false");
  if (field === "integer") return Number.isInteger(v) ? [] : bad("an integer");
  if (field === "string[]") {
    return Array.isArray(v) && v.every((s) => typeof s === "string") ? [] : bad("a string list");
  }
  if ("enum" in field) return field.enum.includes(v as string) ? [] : bad(field.enum.join(" | "));
  if ("object" in field) return checkFields(v, field.object, `${path}.`);
  if ("list" in field) {
    if (!Array.isArray(v)) return bad("a list");
    return v.flatMap((item, i) => checkFields(item, field.list, `${path}[${i}].`));
  }
  const ok = typeof v === "object" && v !== null &&
    Object.values(v).every((x) => typeof x === field.map);
  return ok ? [] : bad(`a map of ${field.map}`);
}

/** Families of a comma-separated subnet list, the way kind's validateSubnets reads it. */
function subnetFamilies(list: string): number[] {
  return list.split(",").map((s) => parseCidr(s, { strict: true }).family);
}

interface KindCluster {
  networking: {
    ipFamily?: string;
    podSubnet?: string;
    serviceSubnet?: string;
    disableDefaultCNI?: boolean;
  };
  nodes: { role: string }[];
}

function loadKindConfig(path: string): KindCluster {
  const docs = parseYamlFile(path);
  assert.equal(docs.length, 1, `${path} holds one document`);
  assert.deepEqual(checkFields(docs[0], CLUSTER), [], `${path} fields`);
  return docs[0] as KindCluster;
}

const CONFIGS = [
  { path: "deploy/kind/cluster.yaml", family: "ipv4", pods: [4], services: [4] },
  { path: "deploy/kind/cluster-dual.yaml", family: "dual", pods: [4, 6], services: [4, 6] },
];

for (const { path, family, pods, services } of CONFIGS) {
  Deno.test(`checkFields() finds only kind v1alpha4 fields in ${path}`, () => {
    loadKindConfig(path);
  });

  Deno.test(`${path} has no default CNI, ${family} subnets, one control plane, two workers`, () => {
    const { networking, nodes } = loadKindConfig(path);
    assert.equal(networking.disableDefaultCNI, true);
    assert.equal(networking.ipFamily ?? "ipv4", family);
    // kind leaves the pod subnet empty when it installs no CNI: it must be here.
    assert.ok(networking.podSubnet, "podSubnet is set");
    assert.deepEqual(subnetFamilies(networking.podSubnet), pods);
    assert.equal(networking.podSubnet.split(",")[0], "10.244.0.0/16");
    // kind's default service subnet is IPv4 only: dual-stack has to name both.
    assert.deepEqual(subnetFamilies(networking.serviceSubnet ?? "10.96.0.0/16"), services);
    assert.deepEqual(nodes.map((n) => n.role), ["control-plane", "worker", "worker"]);
  });
}

Deno.test("checkFields() reports a misspelt field, a wrong type and a bad enum value", () => {
  const config = {
    kind: "Cluster",
    apiVersion: "kind.x-k8s.io/v1alpha4",
    networking: { disableDefaultCni: true, apiServerPort: "6443" },
    nodes: [{ role: "master" }],
  };
  assert.deepEqual(checkFields(config, CLUSTER), [
    "networking.disableDefaultCni is not a kind field",
    'networking.apiServerPort is "6443", want an integer',
    'nodes[0].role is "master", want control-plane | worker',
  ]);
});
