// Static mode's node source: the nodes file, re-read whenever it changes on disk.
import type { NodeInfo } from "../kube/node.ts";
import { sleep } from "../time/sleep.ts";

/** Callbacks and tuning for {@linkcode watchNodesFile}. */
export interface NodesFileWatchOptions {
  readonly signal: AbortSignal;
  readonly onChange: (nodes: ReadonlyMap<string, NodeInfo>) => void;
  readonly onState: (state: { watching: boolean; error?: string }) => void;
  /** How often to look at the file's mtime (default 250 ms: cheap, and edits show fast). */
  readonly pollMs?: number;
}

/** Reads the nodes file into a map by name. */
export async function readNodesFile(path: string): Promise<Map<string, NodeInfo>> {
  const nodes = parseNodesFile(await Deno.readTextFile(path));
  return new Map(nodes.map((n) => [n.name, n]));
}

/**
 * Polls `path`; on every change (mtime, size or inode: editors replace files by rename) reads
 * it and hands the nodes over. A bad file is reported and the last good list stays in force.
 */
export async function watchNodesFile(path: string, opts: NodesFileWatchOptions): Promise<void> {
  let seen = "";
  while (!opts.signal.aborted) {
    try {
      const st = await Deno.stat(path);
      const key = `${st.mtime?.getTime()}:${st.size}:${st.ino}`;
      if (key !== seen) {
        seen = key;
        const nodes = await readNodesFile(path);
        opts.onState({ watching: true });
        opts.onChange(nodes);
      }
    } catch (err) {
      const error = `Cannot read nodes file ${path}: ${(err as Error).message}`;
      opts.onState({ watching: false, error });
    }
    await sleep(opts.pollMs ?? 250, opts.signal);
  }
}

/**
 * Parses the nodes file: `[{"name","ip","podCIDRs":[...]}]`, with an optional `"ips":[...]` for
 * dual-stack node addresses and optional `"labels":{...}` (as the Node object's). Throws naming the entry and field that is wrong.
 *
 * @example
 * parseNodesFile('[{"name":"n1","ip":"192.0.2.11","podCIDRs":["10.244.1.0/24"]}]');
 */
export function parseNodesFile(text: string): NodeInfo[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`Nodes file is not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(data)) throw new Error("Nodes file must be a JSON array of nodes");
  return data.map((entry, i) => parseNodesFileEntry(entry, i));
}

/** Parses one nodes-file entry (also accepted by the fake API server's control API). */
export function parseNodesFileEntry(entry: unknown, index = 0): NodeInfo {
  const where = `Nodes file entry ${index}`;
  if (typeof entry !== "object" || entry === null) throw new Error(`${where} is not an object`);
  const e = entry as Record<string, unknown>;
  if (typeof e.name !== "string" || e.name === "") {
    throw new Error(`${where}: "name" must be a string`);
  }
  const ips: string[] = [];
  if (e.ip !== undefined) {
    if (typeof e.ip !== "string") throw new Error(`${where} (${e.name}): "ip" must be a string`);
    ips.push(e.ip);
  }
  if (e.ips !== undefined) {
    if (!isStringArray(e.ips)) {
      throw new Error(`${where} (${e.name}): "ips" must be a list of strings`);
    }
    for (const ip of e.ips) if (!ips.includes(ip)) ips.push(ip);
  }
  const podCIDRs = e.podCIDRs ?? [];
  if (!isStringArray(podCIDRs)) {
    throw new Error(`${where} (${e.name}): "podCIDRs" must be a list of strings`);
  }
  if (e.labels === undefined) return { name: e.name, ips, podCIDRs };
  const labels = e.labels as Record<string, unknown>;
  if (
    typeof labels !== "object" || labels === null || Array.isArray(labels) ||
    !Object.values(labels).every((v) => typeof v === "string")
  ) {
    throw new Error(`${where} (${e.name}): "labels" must be an object of strings`);
  }
  return { name: e.name, ips, podCIDRs, labels: { ...labels } as Record<string, string> };
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}
