// Held connections for strict mode's tests: a server in one namespace and clients in others, each
// connection (TCP or UDP, IPv4 or IPv6) talking both ways all the time, a byte (or a datagram)
// every 20 ms from each end, each end counting what it receives and when it last did. A cut
// connection shows as both ends' counts standing still; one that stays allowed keeps counting
// without a gap. Built-ins only, run with the test's deno (UDP needs --unstable-net).
import type { Host } from "./cluster.ts";

/** One connection to hold. */
export interface HeldSpec {
  /** How the test names it. */
  readonly name: string;
  readonly from: Host;
  /** The server's address (its family is the connection's). */
  readonly to: string;
  readonly proto: "tcp" | "udp";
}

/** What one end of a connection saw. */
export interface EndSeen {
  /** Bytes (TCP) or datagrams (UDP) received. */
  readonly count: number;
  /** Unix ms of the last one (0: none yet). */
  readonly last: number;
  /** The longest wait between two, ms, since the first. */
  readonly maxGap: number;
}

/** Both ends of a held connection. */
export interface Seen {
  readonly client: EndSeen;
  readonly server: EndSeen;
}

/** The held connections, talking until disposed. */
export interface Held extends AsyncDisposable {
  /** What both ends of `name` saw, as of their last report (every 50 ms). */
  seen(name: string): Seen;
  /** Resolves when every connection has talked both ways `n` times. */
  talking(n?: number, timeoutMs?: number): Promise<void>;
}

const PERIOD_MS = 20;
const REPORT_MS = 50;

// Each end: count per connection key, report {key: [count, last, maxGap]} every REPORT_MS.
const COMMON = `
const seen = new Map();
const got = (key, n) => {
  const now = Date.now();
  const s = seen.get(key) ?? [0, 0, 0];
  if (s[1] > 0) s[2] = Math.max(s[2], now - s[1]);
  s[0] += n; s[1] = now;
  seen.set(key, s);
};
setInterval(() => console.log(JSON.stringify(Object.fromEntries(seen))), ${REPORT_MS});
const plain = (ip) => ip.startsWith("::ffff:") ? ip.slice(7) : ip;
`;

function serverCode(port: number): string {
  return `${COMMON}
const tcp = Deno.listen({ hostname: "::", port: ${port} });
(async () => {
  for await (const c of tcp) {
    const key = "tcp " + plain(c.remoteAddr.hostname);
    const b = new Uint8Array(256);
    (async () => { for (;;) { const n = await c.read(b).catch(() => null); if (n === null) break; got(key, n); } })();
    setInterval(() => c.write(new Uint8Array(1)).catch(() => {}), ${PERIOD_MS});
  }
})();
const udp = Deno.listenDatagram({ transport: "udp", hostname: "::", port: ${port} });
const peers = new Map();
(async () => {
  for (;;) {
    const [, a] = await udp.receive();
    const key = "udp " + plain(a.hostname);
    got(key, 1);
    if (!peers.has(key)) {
      peers.set(key, a);
      setInterval(() => udp.send(new Uint8Array(1), a).catch(() => {}), ${PERIOD_MS});
    }
  }
})();
`;
}

function clientCode(conns: readonly HeldSpec[], port: number): string {
  const list = JSON.stringify(conns.map((c) => ({ name: c.name, to: c.to, proto: c.proto })));
  return `${COMMON}
for (const c of ${list}) {
  if (c.proto === "tcp") {
    const s = await Deno.connect({ hostname: c.to, port: ${port} });
    const b = new Uint8Array(256);
    (async () => { for (;;) { const n = await s.read(b).catch(() => null); if (n === null) break; got(c.name, n); } })();
    setInterval(() => s.write(new Uint8Array(1)).catch(() => {}), ${PERIOD_MS});
  } else {
    const v6 = c.to.includes(":");
    const s = Deno.listenDatagram({ transport: "udp", hostname: v6 ? "::" : "0.0.0.0", port: 0 });
    (async () => { for (;;) { await s.receive(); got(c.name, 1); } })();
    const to = { transport: "udp", hostname: c.to, port: ${port} };
    setInterval(() => s.send(new Uint8Array(1), to).catch(() => {}), ${PERIOD_MS});
  }
}
`;
}

/** A process in `host`'s namespace whose stdout reports are kept. */
function reporter(host: Host, code: string) {
  const p = new Deno.Command("nsenter", {
    args: [`--net=${host.netns}`, Deno.execPath(), "eval", "--unstable-net", code],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let last: Record<string, [number, number, number]> = {};
  let errors = "";
  const reading = (async () => {
    let rest = "";
    for await (const chunk of p.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const lines = rest.split("\n");
      rest = lines.pop()!;
      if (lines.length > 0) last = JSON.parse(lines.at(-1)!);
    }
  })();
  const stderr = (async () => {
    for await (const chunk of p.stderr.pipeThrough(new TextDecoderStream())) errors += chunk;
  })();
  return {
    get: (key: string) => last[key],
    errors: () => errors,
    async stop() {
      try {
        p.kill("SIGKILL");
      } catch { /* already gone */ }
      await p.status;
      await Promise.allSettled([reading, stderr]);
    },
  };
}

/**
 * Starts a server at `server` (TCP and UDP on `port`, both families) and the connections of
 * `conns` to it (one process per client host); resolves once every client process runs.
 *
 * @example
 * await using held = await holdConnections(xa, [{ name: "v4", from: xb, to: xa.ips[0], proto: "tcp" }], 7001);
 * await held.talking();
 */
export async function holdConnections(
  server: Host,
  conns: readonly HeldSpec[],
  port: number,
): Promise<Held> {
  const srv = reporter(server, serverCode(port));
  await new Promise((r) => setTimeout(r, 1500)); // the server listens (deno starts in ~1 s)
  const byHost = new Map<Host, HeldSpec[]>();
  for (const c of conns) byHost.set(c.from, [...byHost.get(c.from) ?? [], c]);
  const clients = [...byHost].map(([host, list]) => ({
    list,
    r: reporter(host, clientCode(list, port)),
  }));
  const clientOf = (name: string) => clients.find((c) => c.list.some((x) => x.name === name))!;
  const spec = (name: string) => conns.find((c) => c.name === name)!;
  const end = (v: [number, number, number] | undefined): EndSeen =>
    v ? { count: v[0], last: v[1], maxGap: v[2] } : { count: 0, last: 0, maxGap: 0 };
  const seen = (name: string): Seen => {
    const c = spec(name);
    const fromIp = c.from.ips.find((ip) => ip.includes(":") === c.to.includes(":"))!;
    return {
      client: end(clientOf(name).r.get(name)),
      server: end(srv.get(`${c.proto} ${fromIp}`)),
    };
  };
  return {
    seen,
    async talking(n = 10, timeoutMs = 15000) {
      const end = Date.now() + timeoutMs;
      const quiet = () =>
        conns.filter((c) => {
          const s = seen(c.name);
          return s.client.count < n || s.server.count < n;
        });
      while (quiet().length > 0) {
        if (Date.now() > end) {
          throw new Error(
            `Held connections not talking after ${timeoutMs} ms: ` +
              quiet().map((c) => `${c.name} ${JSON.stringify(seen(c.name))}`).join("; ") +
              `\nserver: ${srv.errors()}\nclients: ${clients.map((c) => c.r.errors()).join("\n")}`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async [Symbol.asyncDispose]() {
      await Promise.all([srv.stop(), ...clients.map((c) => c.r.stop())]);
    },
  };
}
