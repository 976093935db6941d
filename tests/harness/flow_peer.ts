// Long-lived flows for conntrack tests, one process per namespace. Self-contained (no imports).
//
//   serve PORT                  TCP: holds every connection open; UDP: answers every datagram
//   connect tcp:HOST:PORT ...   opens each TCP connection, sends each UDP datagram (udp:HOST:PORT)
//                               and waits for its answer, then holds them until stdin closes
//
// Prints {"ready":true} once listening or once every flow is up, then {"closed":N} per TCP
// connection the other side (or a conntrack-less path) ended. Run with --unstable-net (UDP).

async function serve(port: number): Promise<void> {
  // "::" with bindv6only=0 (a new netns's default) takes IPv4 too.
  const tcp = Deno.listen({ hostname: "::", port, transport: "tcp" });
  const udp = Deno.listenDatagram({ hostname: "::", port, transport: "udp" });
  console.log(JSON.stringify({ ready: true }));
  (async () => {
    for (;;) {
      const [data, peer] = await udp.receive();
      await udp.send(data, peer);
    }
  })();
  for await (const conn of tcp) {
    (async () => {
      const buf = new Uint8Array(64);
      try {
        while ((await conn.read(buf)) !== null) { /* hold */ }
      } catch { /* reset */ }
      conn.close();
    })();
  }
}

async function connect(targets: string[]): Promise<void> {
  const held: Deno.Conn[] = [];
  for (const t of targets) {
    const [kind, ...rest] = t.split(":");
    const port = Number(rest.pop());
    const hostname = rest.join(":");
    if (kind === "tcp") {
      held.push(await Deno.connect({ hostname, port, transport: "tcp" }));
    } else {
      const v6 = hostname.includes(":");
      const sock = Deno.listenDatagram({
        hostname: v6 ? "::" : "0.0.0.0",
        port: 0,
        transport: "udp",
      });
      await sock.send(new TextEncoder().encode("hi"), { transport: "udp", hostname, port });
      await sock.receive();
    }
  }
  console.log(JSON.stringify({ ready: true }));
  for (const [i, conn] of held.entries()) {
    (async () => {
      try {
        while ((await conn.read(new Uint8Array(64))) !== null) { /* hold */ }
      } catch { /* reset */ }
      console.log(JSON.stringify({ closed: i }));
    })();
  }
  // Until the test closes stdin.
  for await (const _ of Deno.stdin.readable) { /* wait */ }
  Deno.exit(0);
}

const [mode, ...args] = Deno.args;
if (mode === "serve") await serve(Number(args[0]));
else await connect(args);
