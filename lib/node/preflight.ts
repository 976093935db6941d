// Start-up check of the programs the agent execs: a missing one is a clear log line at start
// instead of a failed route or rule much later, and the agent refuses to run without the ones
// it cannot work without. Only stats PATH entries: nothing is spawned.
import { missingTools } from "../net/tools.ts";
import type { Logger } from "../log/logger.ts";

/** A program the agent (or the plugin it installs) runs, and what it is for. */
export interface Tool {
  readonly name: string;
  /** Without it the agent cannot do its job at all: it exits non-zero. */
  readonly required: boolean;
  readonly usedFor: string;
}

/**
 * What the agent runs. iptables-save comes first in every rule change (lib/net/iptables.ts).
 * Routes, the VXLAN device, neighbours and FDB entries go over rtnetlink: no `ip`.
 */
export const AGENT_TOOLS: readonly Tool[] = [
  { name: "nft", required: true, usedFor: "masquerade and NetworkPolicy (table inet mycni)" },
  { name: "iptables-restore", required: true, usedFor: "the IPv4 forward accept rules" },
  { name: "iptables-save", required: true, usedFor: "reading IPv4 rules before changing them" },
  { name: "ip6tables-restore", required: false, usedFor: "the IPv6 forward accept rules" },
  { name: "ip6tables-save", required: false, usedFor: "reading IPv6 rules before changing them" },
];

/**
 * The tools not found as executable files in any directory of `path` (a `$PATH` value).
 *
 * @example
 * findMissingTools("/usr/sbin:/usr/bin").map((t) => t.name); // [] on a complete node
 */
export function findMissingTools(path: string, tools: readonly Tool[] = AGENT_TOOLS): Tool[] {
  const missing = new Set(missingTools(tools.map((t) => t.name), path));
  return tools.filter((t) => missing.has(t.name));
}

/**
 * Logs one line per missing tool (error when required, warning otherwise) and returns whether
 * every required tool is there.
 *
 * @example
 * if (!checkTools(env.PATH ?? "", log)) return 1;
 */
export function checkTools(
  path: string,
  log: Logger,
  tools: readonly Tool[] = AGENT_TOOLS,
): boolean {
  const missing = findMissingTools(path, tools);
  for (const t of missing) {
    const fields = { program: t.name, usedFor: t.usedFor, path };
    if (t.required) log.error("required program not found on PATH", fields);
    else log.warn("program not found on PATH", fields);
  }
  return !missing.some((t) => t.required);
}
