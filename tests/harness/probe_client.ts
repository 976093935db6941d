// Drives a probe (probe.ts) running inside a namespace: TCP connections that report the source
// address the other side saw, and HTTP requests made from inside the namespace.
import { inNetns } from "../../lib/process/run.ts";
import { type Child, spawnChild } from "./child.ts";
import type { ProbeReply, ProbeRequest } from "./probe.ts";

/** The port every probe listens on. */
export const PROBE_PORT = 7777;

/** More ports a probe answers on (servers for NetworkPolicy tests: TCP and UDP 80, 81). */
export interface ServePorts {
  readonly tcp?: readonly number[];
  readonly udp?: readonly number[];
}

const PROBE_SCRIPT = new URL("./probe.ts", import.meta.url).pathname;

type Request = ProbeRequest extends infer R ? R extends unknown ? Omit<R, "id"> : never : never;

/** A probe process in one namespace. */
export interface Probe extends AsyncDisposable {
  readonly child: Child;
  /** Opens a TCP connection to `host` (a probe's port by default); `seen` is our address there. */
  tcp(host: string, opts?: { port?: number; timeoutMs?: number }): Promise<ProbeReply>;
  /**
   * Sends a UDP datagram to `host:port` and waits for the answer; `seen` is our address there.
   * From source port `sport` when given (the same flow each time), else a new one.
   */
  udp(
    host: string,
    opts: { port: number; timeoutMs?: number; sport?: number },
  ): Promise<ProbeReply>;
  /** An HTTP request from inside the namespace. */
  http(
    url: string,
    opts?: { method?: string; body?: string; timeoutMs?: number },
  ): Promise<ProbeReply>;
}

/**
 * Starts a probe inside the namespace at `netns` and waits until it listens.
 *
 * @example
 * await using p = await startProbe("/run/netns/mccx1n1");
 * (await p.tcp("203.0.113.1")).seen; // "192.0.2.11"
 */
export async function startProbe(
  netns: string,
  opts: { logFile?: string; serve?: ServePorts } = {},
): Promise<Probe> {
  const extra = [
    ...(opts.serve?.tcp?.length ? ["--tcp", opts.serve.tcp.join(",")] : []),
    ...(opts.serve?.udp?.length ? ["--udp", opts.serve.udp.join(",")] : []),
  ];
  const child = await spawnChild(
    inNetns(netns, [
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-net",
      "--no-check",
      "--no-config",
      "--no-lock",
      PROBE_SCRIPT,
      "--port",
      String(PROBE_PORT),
      ...extra,
    ]),
    { pipeStdio: true, logFile: opts.logFile },
  );
  const waiting = new Map<number, (r: ProbeReply) => void>();
  let ready: (ok: boolean) => void = () => {};
  const readyP = new Promise<boolean>((r) => (ready = r));
  const writer = child.process.stdin.getWriter();
  const enc = new TextEncoder();
  let nextId = 1;
  (async () => {
    let buf = "";
    for await (const chunk of child.process.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line);
        if (msg.ready) ready(true);
        else waiting.get(msg.id)?.(msg), waiting.delete(msg.id);
      }
    }
  })().catch(() => {}).finally(() => {
    ready(false);
    for (const resolve of waiting.values()) resolve({ id: 0, ok: false, error: "probe exited" });
    waiting.clear();
  });
  const ask = async (req: Request): Promise<ProbeReply> => {
    const id = nextId++;
    const reply = new Promise<ProbeReply>((resolve) => waiting.set(id, resolve));
    await writer.write(enc.encode(JSON.stringify({ ...req, id }) + "\n"));
    return await reply;
  };
  const timer = setTimeout(() => ready(false), 15000);
  const ok = await readyP;
  clearTimeout(timer);
  if (!ok) {
    await child.stop("SIGKILL");
    throw new Error(`Cannot start probe in ${netns}: it did not report listening`);
  }
  return {
    child,
    tcp: (host, o = {}) =>
      ask({ op: "tcp", host, port: o.port ?? PROBE_PORT, timeoutMs: o.timeoutMs }),
    udp: (host, o) =>
      ask({ op: "udp", host, port: o.port, timeoutMs: o.timeoutMs, sport: o.sport }),
    http: (url, o = {}) => ask({ op: "http", url, ...o }),
    async [Symbol.asyncDispose]() {
      await writer.close().catch(() => {});
      await child.stop("SIGTERM", 1000);
    },
  };
}
