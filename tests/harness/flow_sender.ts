// Connection attempts from inside a test namespace, for the flow log's tests and benchmark. Built-
// ins only, so it starts fast with --no-config. UDP needs --unstable-net.
//
//   udp  --to ADDR --port N [--count C] [--rate R]   one socket, C datagrams to ports N..N+C-1
//                                                     (each a flow of its own), R a second
//   tcp  --to ADDR --port N [--wait MS]              one connect(), given up after MS
//
//   deno run -A --unstable-net --no-check --no-config --no-lock flow_sender.ts udp --to 10.0.0.2 --port 1000 --count 500
// Prints one JSON line: {"sent": C, "ms": elapsed}.
import { parseArgs } from "node:util";

const { positionals, values } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    to: { type: "string" },
    port: { type: "string" },
    count: { type: "string", default: "1" },
    rate: { type: "string", default: "0" },
    wait: { type: "string", default: "1500" },
  },
});
const to = values.to!;
const port = Number(values.port);
const start = performance.now();
let sent = 0;
if (positionals[0] === "udp") {
  const count = Number(values.count), rate = Number(values.rate);
  const sock = Deno.listenDatagram({
    transport: "udp",
    hostname: to.includes(":") ? "::" : "0.0.0.0",
    port: 0,
  });
  const payload = new Uint8Array(16);
  for (let i = 0; i < count; i++) {
    await sock.send(payload, { transport: "udp", hostname: to, port: 1 + (port - 1 + i) % 65535 });
    sent++;
    // Paced in 10 ms slices: `rate` a second on average, whatever each send costs.
    if (rate > 0 && i % Math.max(1, Math.round(rate / 100)) === 0) {
      const due = start + (i / rate) * 1000;
      const ahead = due - performance.now();
      if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));
    }
  }
  sock.close();
} else if (positionals[0] === "tcp") {
  const attempt = Deno.connect({ hostname: to, port, transport: "tcp" }).then(
    (c) => c.close(),
    () => {},
  );
  sent = 1;
  await Promise.race([attempt, new Promise((r) => setTimeout(r, Number(values.wait)))]);
} else {
  throw new Error(`flow_sender: want udp or tcp, got ${positionals[0]}`);
}
console.log(JSON.stringify({ sent, ms: Math.round(performance.now() - start) }));
// A connect still pending must not keep us: the test has seen what it needed.
Deno.exit(0);
