// v1.Pod JSON -> the PodInfo policy reads (DESIGN.md "NetworkPolicy", contract — inputs): labels,
// node, host networking, named container ports and the pod's addresses.
import { formatIp, parseIp } from "../ip/cidr.ts";
import { listAt, objectAt, optionalObjectAt, optionalStringAt, stringMapAt } from "./fields.ts";
import {
  type ContainerPort,
  objectKey,
  type PodInfo,
  type Protocol,
  PROTOCOLS,
} from "./policy_objects.ts";

/** A pod policy can use, or why not (`key` is `namespace/name`, "?" for a missing part). */
export type ParsedPod =
  | { readonly ok: true; readonly pod: PodInfo }
  | { readonly ok: false; readonly key: string; readonly reason: string };

/**
 * Reads a v1.Pod. Addresses come from `status.podIPs` (else `status.podIP`) in canonical text,
 * IPv4 first; a pod in phase Succeeded or Failed has none (the kubelet may already have given
 * them to another pod). Container ports default to TCP; a port with a protocol policy cannot
 * name, or without a usable number, is skipped (it can only ever be matched by a named port,
 * so skipping it allows less, never more). A field of the wrong type, or an address that does
 * not parse, makes the pod not ok, with the field named.
 *
 * @example
 * parsePod({
 *   metadata: { namespace: "x", name: "a", labels: { pod: "a" } },
 *   spec: { nodeName: "n1", containers: [{ ports: [{ name: "http", containerPort: 80 }] }] },
 *   status: { podIPs: [{ ip: "10.244.1.5" }] },
 * });
 * // { ok: true, pod: { namespace: "x", name: "a", labels: { pod: "a" }, node: "n1",
 * //   ips: ["10.244.1.5"], hostNetwork: false,
 * //   ports: [{ name: "http", port: 80, protocol: "TCP" }] } }
 */
export function parsePod(obj: unknown): ParsedPod {
  let namespace = "", name = "";
  try {
    const o = objectAt(obj, "pod");
    const metadata = objectAt(o.metadata, "metadata");
    namespace = optionalStringAt(metadata.namespace, "metadata.namespace", "");
    name = optionalStringAt(metadata.name, "metadata.name", "");
    if (namespace === "" || name === "") {
      const missing = namespace === "" ? "metadata.namespace" : "metadata.name";
      return { ok: false, key: keyOf(namespace, name), reason: `pod object has no ${missing}` };
    }
    const spec = optionalObjectAt(o.spec, "spec") ?? {};
    const status = optionalObjectAt(o.status, "status") ?? {};
    const hostNetwork = spec.hostNetwork ?? false;
    if (typeof hostNetwork !== "boolean") {
      throw new Error(`spec.hostNetwork: want true or false, got ${JSON.stringify(hostNetwork)}`);
    }
    return {
      ok: true,
      pod: {
        namespace,
        name,
        labels: stringMapAt(metadata.labels, "metadata.labels"),
        node: optionalStringAt(spec.nodeName, "spec.nodeName", ""),
        ips: podIps(status),
        hostNetwork,
        ports: containerPorts(spec),
      },
    };
  } catch (err) {
    return { ok: false, key: keyOf(namespace, name), reason: (err as Error).message };
  }
}

function keyOf(namespace: string, name: string): string {
  return objectKey(namespace || "?", name || "?");
}

function podIps(status: Record<string, unknown>): string[] {
  const phase = optionalStringAt(status.phase, "status.phase", "");
  if (phase === "Succeeded" || phase === "Failed") return [];
  let texts: { text: string; path: string }[] = listAt(status.podIPs, "status.podIPs").map(
    (entry, i) => {
      const path = `status.podIPs[${i}].ip`;
      return { text: optionalStringAt(objectAt(entry, `status.podIPs[${i}]`).ip, path, ""), path };
    },
  );
  if (texts.length === 0) {
    texts = [{ text: optionalStringAt(status.podIP, "status.podIP", ""), path: "status.podIP" }];
  }
  const ips = texts.filter((t) => t.text !== "").map(({ text, path }) => {
    try {
      return parseIp(text);
    } catch {
      throw new Error(`${path}: ${JSON.stringify(text)} is not an IP address`);
    }
  });
  // IPv4 first (the order the plan's types promise), each address once.
  const v4 = ips.filter((ip) => ip.family === 4), v6 = ips.filter((ip) => ip.family === 6);
  return [...new Set([...v4, ...v6].map(formatIp))];
}

function containerPorts(spec: Record<string, unknown>): ContainerPort[] {
  const out: ContainerPort[] = [];
  listAt(spec.containers, "spec.containers").forEach((c, i) => {
    const container = objectAt(c, `spec.containers[${i}]`);
    listAt(container.ports, `spec.containers[${i}].ports`).forEach((p, j) => {
      const path = `spec.containers[${i}].ports[${j}]`;
      const port = objectAt(p, path);
      const protocol = port.protocol ?? "TCP";
      const number = port.containerPort;
      if (typeof protocol !== "string" || !PROTOCOLS.includes(protocol)) return;
      if (typeof number !== "number" || !Number.isInteger(number) || number < 1 || number > 65535) {
        return;
      }
      out.push({
        name: optionalStringAt(port.name, `${path}.name`, ""),
        port: number,
        protocol: protocol as Protocol,
      });
    });
  });
  return out;
}
