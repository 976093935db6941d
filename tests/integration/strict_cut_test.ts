// What deleting a conntrack entry does to an established TCP connection that a new policy
// denies (DESIGN.md "contract — strictness"), in the flow lab: the client's connection to the
// server keeps talking both ways; the server gets isolated and the entry is deleted. With the
// kernel's default nf_conntrack_tcp_loose=1, the server's next segment is picked up as a NEW
// connection server -> client, which no rule denies, and the client's segments then pass as its
// replies: the cut is undone. Refusing a new TCP connection that does not start with a SYN in
// the forward hook keeps it cut. Strict mode needs that rule (or tcp_loose=0) to hold.
import { inNetns, run } from "../../lib/process/run.ts";
import { assert } from "../harness/assert.ts";
import { type FlowLab, flowLab, LAB, labTable, loadTable } from "../harness/flow_lab.ts";
import { canRunPrivileged } from "../harness/netns.ts";

const DECIDER = { direction: "ingress" as const, policies: ["y/deny-all"] };
const NOT_SYN = "ct state new tcp flags & (fin | syn | rst | ack) != syn drop";
const PORT = 7000;

/** A peer writing a byte every 50 ms and printing how many it has read, every 100 ms. */
function chatter(lab: FlowLab, side: "server" | "client"): Deno.ChildProcess {
  const open = side === "server"
    ? `const c = await Deno.listen({ hostname: "${LAB.server[4]}", port: ${PORT} }).accept();`
    : `const c = await Deno.connect({ hostname: "${LAB.server[4]}", port: ${PORT} });`;
  const code = `${open}
    let got = 0;
    (async () => { const b = new Uint8Array(64); for (;;) { const n = await c.read(b).catch(() => null); if (n === null) break; got += n; } })();
    setInterval(() => c.write(new Uint8Array(1)).catch(() => {}), 50);
    setInterval(() => console.log(got), 100);`;
  const ns = side === "server" ? lab.server : lab.client;
  return new Deno.Command("nsenter", {
    args: [`--net=${ns.path}`, Deno.execPath(), "eval", code],
    stdout: "piped",
    stderr: "null",
  }).spawn();
}

/** The last count a chatter printed, read as it goes. */
function lastCount(p: Deno.ChildProcess): () => number {
  let last = 0, rest = "";
  (async () => {
    for await (const chunk of p.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const lines = rest.split("\n");
      rest = lines.pop()!;
      if (lines.length) last = Number(lines.at(-1));
    }
  })();
  return () => last;
}

async function cutWhileTalking(withRule: boolean): Promise<{ client: number; server: number }> {
  await using lab = await flowLab();
  const table = (isolated: boolean) => {
    const t = labTable(DECIDER, 100);
    const shaped = withRule
      ? t.replace(
        "ct state established,related accept",
        `ct state established,related accept\n    ${NOT_SYN}`,
      )
      : t;
    return isolated ? shaped : shaped.replace(/elements = \{[^}]*\}/g, "");
  };
  await loadTable(lab.router, table(false));
  const server = chatter(lab, "server");
  await new Promise((r) => setTimeout(r, 700));
  const client = chatter(lab, "client");
  const fromServer = lastCount(client), fromClient = lastCount(server);
  try {
    const end = Date.now() + 5000;
    while ((fromServer() < 5 || fromClient() < 5) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert(fromServer() >= 5 && fromClient() >= 5, "the connection talks before the change");
    await loadTable(lab.router, table(true));
    await run(inNetns(lab.router.path, ["conntrack", "-D", "-p", "tcp", "--dport", String(PORT)]));
    await new Promise((r) => setTimeout(r, 500)); // segments in flight settle
    const before = { client: fromServer(), server: fromClient() };
    await new Promise((r) => setTimeout(r, 1500));
    return { client: fromServer() - before.client, server: fromClient() - before.server };
  } finally {
    for (const p of [server, client]) {
      p.kill("SIGKILL");
      await p.status;
    }
  }
}

Deno.test({
  name: "a deleted entry is picked up again mid-stream (tcp_loose) unless new TCP must be a SYN",
  ignore: !canRunPrivileged,
}, async () => {
  const loose = await cutWhileTalking(false);
  console.log(`without the rule, bytes after the cut: ${JSON.stringify(loose)}`);
  assert(loose.client > 5 && loose.server > 5, "the kernel revives the connection in reverse");
  const cut = await cutWhileTalking(true);
  console.log(`with "${NOT_SYN}": ${JSON.stringify(cut)}`);
  assert(cut.client === 0 && cut.server === 0, `the connection stays cut: ${JSON.stringify(cut)}`);
});
