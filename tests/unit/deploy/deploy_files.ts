// Loads what the deploy tests look at: the manifest's objects, the DaemonSet's container and
// how it starts the agent. Paths are relative to the repo root, found from this file.
// deno-lint-ignore-file no-import-prefix -- test-only npm packages, pinned where they are used
import { fileURLToPath } from "node:url";
import type { IDaemonSet } from "npm:kubernetes-models@5.1.0/apps/v1/DaemonSet";
import type { IContainer } from "npm:kubernetes-models@5.1.0/v1/Container";
import type { IPodSpec } from "npm:kubernetes-models@5.1.0/v1/PodSpec";
import { parseAllDocuments } from "npm:yaml@2.9.1";

/** The repo root. */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** deploy/mycni.yaml, relative to the root. */
export const MANIFEST = "deploy/mycni.yaml";

/** A parsed Kubernetes object: only the fields every object has are typed. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

/** Reads a file under the repo root. */
export function readRepoFile(path: string): string {
  return Deno.readTextFileSync(ROOT + path);
}

/** Parses every YAML document in a file; a YAML error names the file and the document. */
export function parseYamlFile(path: string): unknown[] {
  return parseAllDocuments(readRepoFile(path)).map((doc, i) => {
    if (doc.errors.length > 0) {
      throw new Error(`${path} document ${i + 1} is not valid YAML: ${doc.errors[0].message}`);
    }
    return doc.toJS();
  }).filter((obj) => obj !== null);
}

/** The objects of deploy/mycni.yaml, in file order. */
export function loadManifest(): KubeObject[] {
  return parseYamlFile(MANIFEST) as KubeObject[];
}

/** The one object of a kind (and name, when given); throws when there is not exactly one. */
export function findObject(objects: KubeObject[], kind: string, name?: string): KubeObject {
  const found = objects.filter((o) =>
    o.kind === kind && (name === undefined || o.metadata.name === name)
  );
  if (found.length !== 1) {
    throw new Error(`Expected one ${kind} in ${MANIFEST}, found ${found.length}`);
  }
  return found[0];
}

/** The DaemonSet's parts the tests reason about, typed as the schema test checks them. */
export interface AgentPod {
  readonly daemonSet: IDaemonSet;
  readonly podSpec: IPodSpec;
  readonly container: IContainer;
  /** `--name=value` and `--name value` args as [name, value] pairs, in order. */
  readonly flags: readonly (readonly [string, string])[];
}

/** The DaemonSet's single container and its parsed args. */
export function agentPod(objects = loadManifest()): AgentPod {
  const daemonSet = findObject(objects, "DaemonSet") as unknown as IDaemonSet;
  const podSpec = daemonSet.spec?.template.spec;
  if (podSpec?.containers.length !== 1) throw new Error("Expected one container in the DaemonSet");
  const container = podSpec.containers[0];
  return { daemonSet, podSpec, container, flags: parseFlags(container.args ?? []) };
}

/** Splits an argv into [--name, value] pairs; a flag without a value gets "". */
export function parseFlags(args: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) throw new Error(`Argument "${arg}" is not a --flag`);
    const eq = arg.indexOf("=");
    if (eq > 0) out.push([arg.slice(0, eq), arg.slice(eq + 1)]);
    else if (i + 1 < args.length && !args[i + 1].startsWith("--")) out.push([arg, args[++i]]);
    else out.push([arg, ""]);
  }
  return out;
}

/** How the DaemonSet starts the agent on one node: what an integration test replays. */
export interface AgentInvocation {
  /** command + args, with Kubernetes' `$(VAR)` expansion from `env` done. */
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Host paths the pod mounts, each at the same path in the container. */
  readonly hostPaths: readonly string[];
}

/**
 * The agent's argv, env and mounts exactly as the manifest gives them, for node `nodeName`: a test
 * that starts the agent from this breaks when the manifest and the agent drift apart.
 *
 * @example
 * agentInvocation("node-1").argv; // ["/usr/local/bin/mycni-init", "--node-name=node-1", ...]
 */
export function agentInvocation(nodeName: string, objects = loadManifest()): AgentInvocation {
  const { podSpec, container } = agentPod(objects);
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (e.value !== undefined) env[e.name] = e.value;
    else if (field === "spec.nodeName") env[e.name] = nodeName;
    else throw new Error(`Env ${e.name} comes from ${JSON.stringify(e.valueFrom)}: not replayable`);
  }
  // Kubernetes expands $(VAR) from the container's env, leaves unknown names as they are and
  // turns $$ into $.
  const expand = (s: string) =>
    s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name) => {
      if (m === "$$") return "$";
      return env[name] ?? m;
    });
  return {
    argv: [...(container.command ?? []), ...(container.args ?? [])].map(expand),
    env,
    hostPaths: (podSpec.volumes ?? []).flatMap((v) => v.hostPath ? [v.hostPath.path] : []),
  };
}
