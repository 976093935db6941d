// `mycni-init flows`: prints the running agent's recent denied flows (its health port, loopback
// only), for people or as JSON lines, and with --follow each new one as the agent records it.
import type { FlowRecord } from "./flow_log.ts";
import type { FlowsArgs } from "./options.ts";

/**
 * Asks the agent at `args.healthAddr` and writes each record with `out`. Returns the exit
 * code: 0 done (or the follow ended by `signal`), 2 no answer (the agent is not running, the
 * flow log is off, the stream broke).
 *
 * @example
 * Deno.exit(await runFlows(parseFlowsArgs(Deno.args.slice(1)), console.log));
 */
export async function runFlows(
  args: FlowsArgs,
  out: (line: string) => void,
  signal?: AbortSignal,
): Promise<number> {
  const { hostname, port } = args.healthAddr;
  const host = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  // A follow has no end: the timeout runs until the answer begins, `signal` until the end.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error("no answer within 5 s")), 5000);
  const onAbort = () => abort.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  let res: Response;
  try {
    res = await fetch(`${url}/flows${args.follow ? "?follow=1" : ""}`, { signal: abort.signal });
  } catch (err) {
    signal?.removeEventListener("abort", onAbort);
    out(`mycni-init flows: cannot reach the agent at ${url}: ${(err as Error).message}`);
    return 2;
  } finally {
    clearTimeout(timer);
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    out(`mycni-init flows: the agent cannot answer: ${body.error ?? `HTTP ${res.status}`}`);
    return 2;
  }
  try {
    for await (const line of lines(res.body!)) {
      const r = JSON.parse(line);
      if (r.error) {
        out(`mycni-init flows: ${r.error}`);
        return 2;
      }
      out(args.json ? line : formatFlow(r as FlowRecord));
    }
  } catch (err) {
    if (signal?.aborted) return 0;
    out(`mycni-init flows: the agent's answer broke off: ${(err as Error).message}`);
    return 2;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  return 0;
}

/**
 * One record as one line for people.
 *
 * @example
 * formatFlow(r);
 * // "2025-01-02T03:04:05.678Z deny ingress TCP x/a 10.244.1.2 -> y/b 10.244.2.3:80 by y/deny"
 */
export function formatFlow(r: FlowRecord): string {
  const at = (ip: string, pod?: string) => pod ? `${pod} ${ip}` : ip;
  const dst = r.dport === undefined
    ? r.dst
    : r.dst.includes(":")
    ? `[${r.dst}]:${r.dport}`
    : `${r.dst}:${r.dport}`;
  const by = r.policies ? `by ${r.policies.join(", ")}` : "(policy unknown: the state changed)";
  return `${r.time} ${r.verdict} ${r.direction ?? "?"} ${r.proto} ${at(r.src, r.srcPod)} -> ${
    at(dst, r.dstPod)
  } ${by}`;
}

/** The non-empty lines of a byte stream, as they complete. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
      let nl;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (line.trim()) yield line;
      }
    }
    if (rest.trim()) yield rest;
  } finally {
    await reader.cancel().catch(() => {});
  }
}
