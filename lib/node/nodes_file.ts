// Static mode's node source: the nodes file, re-read whenever it changes on disk.
import { type NodeInfo, parseNodesFile } from "./node.ts";
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
