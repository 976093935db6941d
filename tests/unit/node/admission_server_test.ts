// The admission socket without root: the agent's server with a fake handler, the plugin's client
// against it and against no agent, a stale socket, a hung one. The client blocks its thread while
// it waits (lib/plugin/admission.ts says why), so against a server of this test's own it runs in a
// worker (tests/harness/agent_client.ts).
import { type Cidr, parseCidr } from "../../../lib/ip/cidr.ts";
import {
  type AdmissionHandler,
  type AdmissionServer,
  serveAdmission,
} from "../../../lib/node/admission_server.ts";
import { AgentUnavailable, askAgent } from "../../../lib/plugin/admission.ts";
import { askInWorker } from "../../harness/agent_client.ts";
import type {
  AdmissionRequest,
  AdmitRequest,
  ReleaseRequest,
} from "../../../lib/plugin/admission_protocol.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../../harness/assert.ts";

const POD_CIDRS: Cidr[] = [parseCidr("10.244.1.0/24"), parseCidr("fd00:10:244:1::/64")];

/** A scratch dir and, within it, a socket path in a directory that does not exist yet. */
async function scratch(): Promise<{ dir: string; path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "mycni-adm-" });
  return {
    dir,
    path: `${dir}/run/mycni/agent.sock`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** A handler recording every call; `admit` runs `onAdmit` first (delay, fail). */
function recordingHandler(onAdmit: (req: AdmitRequest) => Promise<void> = () => Promise.resolve()) {
  const admits: AdmitRequest[] = [], releases: ReleaseRequest[] = [];
  const handler: AdmissionHandler = {
    async admit(req) {
      admits.push(req);
      await onAdmit(req);
    },
    release(req) {
      releases.push(req);
      return Promise.resolve();
    },
  };
  return { handler, admits, releases };
}

/** serveAdmission() that stops, and is waited for, when the test's scope ends. */
async function served(
  path: string,
  handler: AdmissionHandler,
): Promise<AdmissionServer & AsyncDisposable> {
  const stop = new AbortController();
  const server = await serveAdmission({
    path,
    handler,
    podCIDRs: () => POD_CIDRS,
    signal: stop.signal,
  });
  return {
    ...server,
    async [Symbol.asyncDispose]() {
      stop.abort();
      await server.closed;
    },
  };
}

const admit = (containerId: string, ips = ["10.244.1.5"]): AdmissionRequest => ({
  version: 1,
  kind: "admit",
  containerId,
  ifname: "eth0",
  pod: { namespace: "default", name: containerId },
  ips,
});

/** The client's error for `req`, which must fail. */
async function refusal(path: string, req: AdmissionRequest, ms = 2000): Promise<AgentUnavailable> {
  const err = await assertRejects(() => askInWorker(path, req, ms));
  assert(err instanceof AgentUnavailable, String(err));
  return err;
}

Deno.test("serveAdmission() hands an admit to the handler once and answers when it resolves", async () => {
  await using s = await scratch();
  let finish!: () => void;
  const gate = new Promise<void>((r) => finish = r);
  const rec = recordingHandler(() => gate);
  await using _server = await served(s.path, rec.handler);
  let answered = false;
  const asked = askInWorker(s.path, admit("c1", ["10.244.1.5", "fd00:10:244:1::5"]), 2000)
    .then(() => answered = true);
  while (rec.admits.length === 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  assertEquals(answered, false, "answered before the handler resolved");
  finish();
  await asked;
  assertEquals(rec.admits, [admit("c1", ["10.244.1.5", "fd00:10:244:1::5"])]);
  await askInWorker(
    s.path,
    { version: 1, kind: "release", containerId: "c1", ifname: "eth0" },
    2000,
  );
  assertEquals(rec.releases, [{ version: 1, kind: "release", containerId: "c1", ifname: "eth0" }]);
  await askInWorker(s.path, { version: 1, kind: "ping" }, 2000);
  assertEquals([rec.admits.length, rec.releases.length], [1, 1], "a ping reaches no handler");
});

Deno.test("serveAdmission() makes the directory 0700 and the socket 0600, and removes it on abort", async () => {
  await using s = await scratch();
  const rec = recordingHandler();
  {
    await using _server = await served(s.path, rec.handler);
    assertEquals((await Deno.stat(`${s.dir}/run/mycni`)).mode! & 0o777, 0o700);
    const info = await Deno.lstat(s.path);
    assertEquals([info.isSocket, info.mode! & 0o777], [true, 0o600]);
  }
  assertEquals(await Deno.lstat(s.path).then(() => "there", () => "gone"), "gone");
  const err = await refusal(s.path, { version: 1, kind: "ping" });
  assertMatch(err.message, /no such socket/);
  assertEquals(err.delivered, false);
});

Deno.test("serveAdmission() refuses bad requests and foreign addresses without calling the handler", async () => {
  await using s = await scratch();
  const rec = recordingHandler();
  await using _server = await served(s.path, rec.handler);
  const outside = await refusal(s.path, admit("c1", ["10.244.1.5", "10.244.2.5"]));
  assertMatch(
    outside.message,
    /refused: Invalid admission field "ips\[1\]": 10.244.2.5 is not in this node's podCIDRs \(10.244.1.0\/24, fd00:10:244:1::\/64\)/,
  );
  assertEquals(outside.delivered, true);
  const bad = await refusal(s.path, { ...admit("c2"), ifname: "" } as AdmissionRequest);
  assertMatch(bad.message, /"ifname"/);
  // Raw lines the client would never send: garbage, and a line that never ends.
  for (const [line, re] of [["nonsense\n", /not JSON/], ["x".repeat(20_000), /longer than/]]) {
    using conn = await Deno.connect({ transport: "unix", path: s.path });
    await conn.write(new TextEncoder().encode(line as string)).catch(() => {});
    // The server hangs up with the rest of an over-long line unread: the kernel may reset the
    // connection before the client reads the answer.
    const answer = await new Response(conn.readable).text().catch((err) => {
      if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
      return JSON.stringify({ ok: false, error: "reset: longer than" });
    });
    assertMatch(answer, re as RegExp);
    assertEquals(JSON.parse(answer).ok, false);
  }
  assertEquals([rec.admits, rec.releases], [[], []]);
});

Deno.test("serveAdmission() sends the handler's reason back", async () => {
  await using s = await scratch();
  const rec = recordingHandler(() => Promise.reject(new Error("nft batch failed: EPERM")));
  await using _server = await served(s.path, rec.handler);
  const err = await refusal(s.path, admit("c1"));
  assertEquals(err.message, "the agent refused: nft batch failed: EPERM");
});

Deno.test("serveAdmission() serves a burst of 8 at once: each request one handler call", async () => {
  await using s = await scratch();
  // Every admit waits until all 8 are in the handler: served one at a time, none would finish.
  let release!: () => void;
  const all = new Promise<void>((r) => release = r);
  const rec = recordingHandler(() => {
    if (rec.admits.length === 8) release();
    return all;
  });
  await using _server = await served(s.path, rec.handler);
  const ids = Array.from({ length: 8 }, (_, i) => `burst${i}`);
  await Promise.all(
    ids.map((id, i) => askInWorker(s.path, admit(id, [`10.244.1.${10 + i}`]), 3000)),
  );
  assertEquals(rec.admits.map((a) => a.containerId).sort(), ids);
});

Deno.test("serveAdmission() replaces a stale socket, refuses a live one or a file in the way", async () => {
  await using s = await scratch();
  await Deno.mkdir(`${s.dir}/run/mycni`, { recursive: true });
  // An agent killed with SIGKILL leaves its socket file behind.
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `for await (const c of Deno.listen({ transport: "unix", path: "${s.path}" })) c.close();`,
    ],
    stdout: "null",
  }).spawn();
  for (let i = 0; !(await Deno.lstat(s.path).then(() => true, () => false)); i++) {
    assert(i < 1000, "the child never listened");
    await new Promise((r) => setTimeout(r, 10));
  }
  {
    // Live: the child still answers connections.
    const stop = new AbortController();
    const err = await assertRejects(() =>
      serveAdmission({
        path: s.path,
        handler: recordingHandler().handler,
        podCIDRs: () => [],
        signal: stop.signal,
      })
    );
    assertMatch(err.message, /another process answers on it/);
  }
  child.kill("SIGKILL");
  await child.status;
  const stale = await refusal(s.path, { version: 1, kind: "ping" });
  assertMatch(stale.message, /connection refused/);
  {
    await using _server = await served(s.path, recordingHandler().handler);
    await askInWorker(s.path, { version: 1, kind: "ping" }, 2000);
  }
  await Deno.writeTextFile(s.path, "not a socket");
  const stop = new AbortController();
  const err = await assertRejects(() =>
    serveAdmission({
      path: s.path,
      handler: recordingHandler().handler,
      podCIDRs: () => [],
      signal: stop.signal,
    })
  );
  assertMatch(err.message, /not a socket/);
  assertEquals(await Deno.readTextFile(s.path), "not a socket", "the file is left alone");
});

Deno.test("askAgent() gives up after its timeout on an agent that never answers", async () => {
  await using s = await scratch();
  await Deno.mkdir(`${s.dir}/run/mycni`, { recursive: true });
  // Never accepted: the kernel completes the connect and takes the request all the same.
  using _listener = Deno.listen({ transport: "unix", path: s.path });
  const started = performance.now();
  const err = assertThrows(() => askAgent(s.path, admit("c1"), 300));
  const ms = performance.now() - started;
  assert(err instanceof AgentUnavailable, String(err));
  assertEquals(err.message, "no answer within 300 ms");
  assertEquals(err.delivered, true);
  assert(ms >= 299 && ms < 1500, `gave up after ${ms} ms`);
});

Deno.test("askAgent() names an agent that hangs up without answering", async () => {
  await using s = await scratch();
  await Deno.mkdir(`${s.dir}/run/mycni`, { recursive: true });
  using listener = Deno.listen({ transport: "unix", path: s.path });
  const accepting = (async () => {
    for await (const c of listener) c.close();
  })();
  const err = await refusal(s.path, { version: 1, kind: "ping" });
  assertMatch(err.message, /closed the connection without an answer|Broken pipe|reset/i);
  listener.close();
  await accepting.catch(() => {});
});
