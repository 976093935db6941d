// New TCP connections per second between two namespaces, for bench/policy_throughput.ts: where
// a long flow meets the policy rules once (its first packet), a stream of short connections
// meets them on every first packet. Each connection is connect, one byte, the server's close,
// the client's close (the server closes first, so its TIME_WAIT never holds a client port).
// Run as its own process inside a namespace, server or client:
//   deno run -A --no-lock bench/conn_rate.ts --serve 10.244.1.2:5201
//   deno run -A --no-lock bench/conn_rate.ts --connect 10.244.1.2:5201 [--seconds 3] [--parallel 4]
// The client prints {"connections":N,"seconds":S,"perSecond":R}.
import { parseArgs } from "node:util";
import { inNetns, run } from "../lib/process/run.ts";
import { type Child, spawnChild } from "../tests/harness/child.ts";
import type { Host } from "../tests/harness/cluster.ts";

/** A connection-rate server in `host`'s namespace on `ip`:`port`. */
export function connRateServer(host: Host, ip: string, port: number): Promise<Child> {
  return spawnChild(inNetns(host.netns, [...self(), "--serve", hostPort(ip, port)]));
}

/**
 * New connections per second from `from` to the server at `ip`:`port` for `seconds`,
 * `parallel` connections at a time.
 *
 * @example
 * const perSecond = await connRate(pod, "10.244.2.2", 5201, { seconds: 3, parallel: 4 });
 */
export async function connRate(
  from: Host,
  ip: string,
  port: number,
  opts: { seconds: number; parallel: number },
): Promise<number> {
  const out = await run(inNetns(from.netns, [
    ...self(),
    "--connect",
    hostPort(ip, port),
    "--seconds",
    String(opts.seconds),
    "--parallel",
    String(opts.parallel),
  ]));
  return (JSON.parse(out) as { perSecond: number }).perSecond;
}

function self(): string[] {
  return [Deno.execPath(), "run", "-A", "--no-lock", new URL(import.meta.url).pathname];
}

function hostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function parseHostPort(text: string): { hostname: string; port: number } {
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(text);
  if (!m) throw new Error(`Not an address:port: "${text}"`);
  return { hostname: m[1], port: Number(m[2]) };
}

/** Accepts until killed: reads the client's byte, then closes first. */
async function serve(addr: { hostname: string; port: number }): Promise<void> {
  const listener = Deno.listen({ ...addr, transport: "tcp" });
  for await (const conn of listener) answer(conn);
}

async function answer(conn: Deno.Conn): Promise<void> {
  try {
    await conn.read(new Uint8Array(1));
  } catch { /* a reset connection is the client's to report */ }
  conn.close();
}

/** Waits (at most 10 s) for the server to accept, then runs the timed loops. */
async function connect(
  addr: { hostname: string; port: number },
  seconds: number,
  parallel: number,
): Promise<void> {
  // A connection the policies drop would hang in connect() for minutes: give up loudly.
  setTimeout(() => {
    console.error(`No result after ${seconds + 10} s: connections to ${addr.hostname} hang`);
    Deno.exit(1);
  }, (seconds + 10) * 1000);
  for (let tries = 0;; tries++) {
    try {
      await once(addr);
      break;
    } catch (err) {
      if (tries >= 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const started = performance.now();
  const until = started + seconds * 1000;
  const counts = await Promise.all(
    Array.from({ length: parallel }, async () => {
      let n = 0;
      while (performance.now() < until) {
        await once(addr);
        n++;
      }
      return n;
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const connections = counts.reduce((a, b) => a + b, 0);
  console.log(JSON.stringify({ connections, seconds: elapsed, perSecond: connections / elapsed }));
  Deno.exit(0);
}

/** One connection: connect, one byte, wait for the server's close, close. */
async function once(addr: { hostname: string; port: number }): Promise<void> {
  const conn = await Deno.connect({ ...addr, transport: "tcp" });
  try {
    await conn.write(BYTE);
    while ((await conn.read(BUF)) !== null) { /* until the server closes */ }
  } finally {
    conn.close();
  }
}

const BYTE = new Uint8Array([1]);
const BUF = new Uint8Array(16);

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      serve: { type: "string" },
      connect: { type: "string" },
      seconds: { type: "string", default: "3" },
      parallel: { type: "string", default: "4" },
    },
  });
  if (values.serve) await serve(parseHostPort(values.serve));
  else if (values.connect) {
    await connect(parseHostPort(values.connect), Number(values.seconds), Number(values.parallel));
  } else {
    console.error("usage: conn_rate.ts --serve IP:PORT | --connect IP:PORT [--seconds S]");
    Deno.exit(2);
  }
}
