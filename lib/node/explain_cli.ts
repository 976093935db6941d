// `mycni-init explain`: asks the running agent (its health port, loopback only) whether a flow
// is allowed, and prints the answer for people.
import type { ClusterRuleRef, DirectionVerdict, Explanation } from "../policy/plan.ts";
import type { ExplainArgs } from "./options.ts";

/**
 * Asks the agent at `args.healthAddr` and writes the answer with `out`. Returns the exit code:
 * 0 allowed, 1 denied, 2 no answer (the agent is not running, or cannot answer).
 *
 * @example
 * Deno.exit(await runExplain(parseExplainArgs(Deno.args.slice(1)), console.log));
 */
export async function runExplain(args: ExplainArgs, out: (line: string) => void): Promise<number> {
  const { hostname, port } = args.healthAddr;
  const host = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "[::1]" : hostname;
  const q = new URLSearchParams({
    from: args.from,
    to: args.to,
    port: String(args.port),
    protocol: args.protocol,
  });
  const url = `http://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`;
  let res: Response;
  try {
    res = await fetch(`${url}/explain?${q}`, { signal: AbortSignal.timeout(5000) });
  } catch (err) {
    out(`mycni-init explain: cannot reach the agent at ${url}: ${(err as Error).message}`);
    return 2;
  }
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) {
    out(`mycni-init explain: the agent cannot answer: ${body.error ?? `HTTP ${res.status}`}`);
    return 2;
  }
  out(formatExplanation(args, body as Explanation));
  return (body as Explanation).allowed ? 0 : 1;
}

/**
 * The answer as a few lines of text. With ClusterNetworkPolicies in force each direction also
 * gets a line naming the deciding stage and, for Admin and Baseline, the policy, its priority,
 * the rule index (and name) and the action; then one line per Pass rule met on the way.
 *
 * @example
 * formatExplanation(args, e);
 * // "DENIED  x/a (10.244.1.2) -> y/b (10.244.2.3) TCP 80\n  egress:  allowed: not isolated ..."
 * // with ClusterNetworkPolicies, under a direction:
 * // "           stage Admin: policy deny-y, priority 10, ingress rule 0 \"deny\", action Deny"
 */
export function formatExplanation(args: ExplainArgs, e: Explanation): string {
  const side = (name: string, ip: string) => name === ip ? ip : `${name} (${ip})`;
  return [
    `${e.allowed ? "ALLOWED" : "DENIED"}  ${side(args.from, e.src)} -> ${
      side(args.to, e.dst)
    } ${args.protocol} ${args.port}`,
    `  egress:  ${e.egress.allowed ? "allowed" : "denied"}: ${e.egress.reason}`,
    ...stageLines(e.egress, "egress"),
    `  ingress: ${e.ingress.allowed ? "allowed" : "denied"}: ${e.ingress.reason}`,
    ...stageLines(e.ingress, "ingress"),
  ].join("\n");
}

const INDENT = " ".repeat(11);

/** The stage and rule that decided one direction, and the Pass rules before it. */
function stageLines(v: DirectionVerdict, direction: string): string[] {
  if (v.stage === undefined) return []; // no ClusterNetworkPolicy in force: the reason says all
  const rule = (r: ClusterRuleRef) =>
    `policy ${r.policy}, priority ${r.priority}, ` +
    (r.rule < 0
      ? "the whole policy (it cannot be enforced exactly)"
      : `${direction} rule ${r.rule}${r.name === "" ? "" : ` ${JSON.stringify(r.name)}`}`) +
    `, action ${r.action}`;
  return [
    ...(v.passedBy ?? []).map((r) => `${INDENT}passed at ${r.tier}: ${rule(r)}`),
    `${INDENT}stage ${v.stage}${v.decidedBy ? `: ${rule(v.decidedBy)}` : ""}`,
  ];
}
