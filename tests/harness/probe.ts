// A tiny traffic helper started inside one namespace of the simulated cluster (a pod, a node,
// the external host). It answers every TCP connection on --port (and on each --tcp port) and
// every UDP datagram on each --udp port with the peer address it saw, and on stdin takes
// JSON-line requests to open TCP connections, send UDP datagrams or make HTTP requests from this
// namespace, answering each with one JSON line on stdout. Self-contained: no imports, so it
// starts in tens of milliseconds with --no-config. UDP needs --unstable-net.
//
//   deno run -A --unstable-net --no-check --no-config --no-lock probe.ts --port 7777 --tcp 80,81 --udp 80,81
//   stdin:  {"id":1,"op":"tcp","host":"10.244.2.3","port":7777,"timeoutMs":2000}
//   stdout: {"id":1,"ok":true,"seen":"10.244.1.2"}
//   stdin:  {"id":2,"op":"http","url":"http://127.0.0.1:9749/healthz","method":"GET"}
//   stdout: {"id":2,"ok":true,"status":200,"body":"ok"}

/** One request read from stdin. */
export type ProbeRequest =
  | { id: number; op: "tcp"; host: string; port: number; timeoutMs?: number }
  | { id: number; op: "udp"; host: string; port: number; timeoutMs?: number; sport?: number }
  | { id: number; op: "http"; url: string; method?: string; body?: string; timeoutMs?: number };

/** The answer to a request. */
export interface ProbeReply {
  id: number;
  ok: boolean;
  /** tcp, udp: the source address the other side saw. */
  seen?: string;
  /** http: status and body. */
  status?: number;
  body?: string;
  error?: string;
}

/** The address as a person writes it: v4-mapped IPv6 (a dual-stack socket) back to IPv4. */
export function plainAddress(hostname: string): string {
  const h = hostname.replace(/^\[|\]$/g, "");
  return h.toLowerCase().startsWith("::ffff:") && h.includes(".") ? h.slice(7) : h;
}

async function serve(port: number, ready = true): Promise<void> {
  // "::" with bindv6only=0 (the namespace default) takes IPv4 too, as v4-mapped addresses.
  const listener = Deno.listen({ hostname: "::", port, transport: "tcp" });
  if (ready) console.log(JSON.stringify({ ready: true, port }));
  for await (const conn of listener) {
    const peer = plainAddress((conn.remoteAddr as Deno.NetAddr).hostname);
    conn.write(new TextEncoder().encode(peer + "\n")).catch(() => {}).finally(() => {
      try {
        conn.close();
      } catch { /* already closed */ }
    });
  }
}

async function tcp(host: string, port: number, timeoutMs: number): Promise<ProbeReply> {
  let conn: Deno.TcpConn | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const work = (async () => {
      conn = await Deno.connect({ hostname: host, port, transport: "tcp" });
      const text = await new Response(conn.readable).text();
      conn = undefined; // the readable closed it
      return text.trim();
    })();
    work.catch(() => {});
    const seen = await Promise.race([work, timeout]);
    return { id: 0, ok: seen !== "", seen };
  } catch (err) {
    return { id: 0, ok: false, error: (err as Error).message };
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* already closed */ }
  }
}

/** Answers every datagram on `port` with the address it came from. */
async function serveUdp(port: number): Promise<void> {
  const sock = Deno.listenDatagram({ hostname: "::", port, transport: "udp" });
  for await (const [, from] of sock) {
    const peer = plainAddress((from as Deno.NetAddr).hostname);
    sock.send(new TextEncoder().encode(peer + "\n"), from).catch(() => {});
  }
}

/**
 * Sends one datagram to host:port and waits for the answer (the address the server saw). From
 * source port `sport` when given (one flow, one conntrack entry, datagram after datagram), else
 * a new one each time.
 */
async function udp(
  host: string,
  port: number,
  timeoutMs: number,
  sport = 0,
): Promise<ProbeReply> {
  const v6 = host.includes(":");
  const sock = Deno.listenDatagram({
    hostname: v6 ? "::" : "0.0.0.0",
    port: sport,
    transport: "udp",
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await sock.send(new TextEncoder().encode("probe\n"), {
      transport: "udp",
      hostname: host,
      port,
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    const [data] = await Promise.race([sock.receive(), timeout]);
    const seen = new TextDecoder().decode(data).trim();
    return { id: 0, ok: seen !== "", seen };
  } catch (err) {
    return { id: 0, ok: false, error: (err as Error).message };
  } finally {
    clearTimeout(timer);
    sock.close();
  }
}

async function http(
  req: Extract<ProbeRequest, { op: "http" }>,
): Promise<ProbeReply> {
  try {
    const res = await fetch(req.url, {
      method: req.method ?? "GET",
      body: req.body,
      signal: AbortSignal.timeout(req.timeoutMs ?? 3000),
    });
    return { id: 0, ok: true, status: res.status, body: await res.text() };
  } catch (err) {
    return { id: 0, ok: false, error: (err as Error).message };
  }
}

async function answer(req: ProbeRequest): Promise<ProbeReply> {
  switch (req.op) {
    case "tcp":
      return await tcp(req.host, req.port, req.timeoutMs ?? 2000);
    case "udp":
      return await udp(req.host, req.port, req.timeoutMs ?? 2000, req.sport);
    case "http":
      return await http(req);
    default: {
      const never: never = req;
      return { id: 0, ok: false, error: `unknown op in ${JSON.stringify(never)}` };
    }
  }
}

async function readRequests(): Promise<void> {
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buf = "";
  for await (const chunk of lines) {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === "") continue;
      const req = JSON.parse(line) as ProbeRequest;
      answer(req).then((reply) => console.log(JSON.stringify({ ...reply, id: req.id })));
    }
  }
  // stdin closed: the harness is gone or done with us.
  Deno.exit(0);
}

if (import.meta.main) {
  const flag = (name: string) => {
    const i = Deno.args.indexOf(name);
    return i >= 0 ? Deno.args[i + 1] : undefined;
  };
  const list = (name: string) => (flag(name) ?? "").split(",").filter((p) => p !== "").map(Number);
  const port = Number(flag("--port") ?? 7777);
  const fail = (what: string) => (err: Error) => {
    console.error(`probe: cannot serve ${what}: ${err.message}`);
    Deno.exit(1);
  };
  for (const p of list("--tcp")) serve(p, false).catch(fail(`TCP ${p}`));
  for (const p of list("--udp")) serveUdp(p).catch(fail(`UDP ${p}`));
  serve(port).catch(fail(`TCP ${port}`));
  readRequests();
}
