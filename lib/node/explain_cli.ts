// `mycni-init explain`: asks the running agent (its health port, loopback only) whether a flow
// is allowed, and prints the answer for people.
import type { Explanation } from "../policy/plan.ts";
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
 * The answer as a few lines of text.
 *
 * @example
 * formatExplanation(args, e);
 * // "DENIED  x/a (10.244.1.2) -> y/b (10.244.2.3) TCP 80\n  egress:  allowed: not isolated ..."
 */
export function formatExplanation(args: ExplainArgs, e: Explanation): string {
  const side = (name: string, ip: string) => name === ip ? ip : `${name} (${ip})`;
  return [
    `${e.allowed ? "ALLOWED" : "DENIED"}  ${side(args.from, e.src)} -> ${
      side(args.to, e.dst)
    } ${args.protocol} ${args.port}`,
    `  egress:  ${e.egress.allowed ? "allowed" : "denied"}: ${e.egress.reason}`,
    `  ingress: ${e.ingress.allowed ? "allowed" : "denied"}: ${e.ingress.reason}`,
  ].join("\n");
}
