// The plugin asks the node agent (DESIGN.md "Pod lifecycle"): the built plugin, exec'd as a runtime
// does, against a small agent on a unix socket (the agent's own admission server with a fake
// handler, or a raw listener that never answers, or nothing at all).
import { DatabaseSync } from "node:sqlite";
import { parseCidr } from "../../lib/ip/cidr.ts";
import { runOutput } from "../../lib/process/run.ts";
import { type AdmissionHandler, serveAdmission } from "../../lib/node/admission_server.ts";
import type { AdmitRequest, ReleaseRequest } from "../../lib/plugin/admission_protocol.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { canRunPrivileged, type TempNetns } from "../harness/netns.ts";
import {
  bare,
  PLUGIN,
  type PluginRun,
  resultIps,
  type TestNode,
  testNode,
} from "../harness/plugin.ts";

const ignore = !canRunPrivileged;
const POD_CIDRS = ["10.250.7.0/24", "fd00:250:7::/64"];
const ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=web-0";
const vethsOf = (links: string[]) => links.filter((l) => /^veth[0-9a-f]{11}$/.test(l));

/** A scratch dir for the socket, removed with the test's scope. */
async function socketDir(): Promise<{ path: string; socket: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "mycni-agent-" });
  return {
    path,
    socket: `${path}/run/agent.sock`,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

/** The agent's admission server with a handler that records and runs `onAdmit` (delay, fail). */
async function fakeAgent(
  socket: string,
  onAdmit: (req: AdmitRequest) => Promise<void> = () => Promise.resolve(),
) {
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
  const stop = new AbortController();
  const server = await serveAdmission({
    path: socket,
    handler,
    podCIDRs: () => POD_CIDRS.map((c) => parseCidr(c)),
    signal: stop.signal,
  });
  return {
    admits,
    releases,
    async [Symbol.asyncDispose]() {
      stop.abort();
      await server.closed;
    },
  };
}

/** The pod's addresses on eth0, as the kernel has them (global scope, no prefix). */
async function podAddrs(pod: TempNetns): Promise<string[]> {
  const out = await runOutput(pod.exec(["ip", "-j", "addr", "show", "dev", "eth0"]));
  if (out.code !== 0) return [];
  const [link] = JSON.parse(out.stdout) as { addr_info: { local: string; scope: string }[] }[];
  return link.addr_info.filter((a) => a.scope === "global").map((a) => a.local);
}

/** The last line of the node's plugin log (the newest invocation's outcome). */
async function lastLogLine(node: TestNode): Promise<string> {
  return (await Deno.readTextFile(node.logFile)).trim().split("\n").at(-1) ?? "";
}

/** Where an invocation's wall time went, from the test's clock and the plugin's log line. */
function timeline(run: { execAt: number; exitedAt: number; r: PluginRun }, line: string): string {
  let parsed: { ts?: string; durationMs?: number } = {};
  try {
    parsed = JSON.parse(line);
  } catch { /* no line: said below */ }
  const loggedAt = parsed.ts ? Date.parse(parsed.ts) : NaN;
  const verb = parsed.durationMs ?? NaN;
  return `exec to verb start ${Math.round(loggedAt - verb - run.execAt)} ms, verb ${verb} ms, ` +
    `log line to exit seen ${run.exitedAt - loggedAt} ms; the plugin's log line: ${
      line || "none"
    }; ` +
    `stdout: ${run.r.stdout.trim()}; stderr: ${run.r.stderr.trim()}`;
}

/** A failed ADD left nothing of the pod behind: no veth, no allocation, no eth0 in the pod. */
async function assertNothingLeft(node: TestNode, pod: TempNetns, links: string[]) {
  assertEquals(vethsOf(await node.links()), vethsOf(links), "veths");
  assertEquals(await node.allocations(), [], "IPAM allocations");
  const eth0 = await runOutput(pod.exec(["ip", "link", "show", "eth0"]));
  assert(eth0.code !== 0, "eth0 is still in the pod");
}

Deno.test({
  name:
    "ADD asks the agent after the pod is wired, waits for its answer, and sends the right fields",
  ignore,
}, async () => {
  await using dir = await socketDir();
  await using node = await testNode({ podCIDRs: POD_CIDRS });
  const pod = await node.pod();
  let seenByAgent: string[] = [];
  let answeredAt = 0;
  await using agent = await fakeAgent(dir.socket, async () => {
    // What the kernel holds when the agent is asked: the addresses must already be there.
    seenByAgent = await podAddrs(pod);
    await new Promise((r) => setTimeout(r, 600));
    answeredAt = performance.now();
  });
  const conf = node.conf({ agentSocket: dir.socket });
  const add = await node.exec({
    command: "ADD",
    containerId: "adm1",
    netns: pod.path,
    conf,
    args: ARGS,
  });
  const returnedAt = performance.now();
  assertEquals(add.code, 0, add.stdout);
  assert(answeredAt > 0 && returnedAt >= answeredAt, "ADD returned before the agent answered");
  const ips = resultIps(add).map(bare);
  assertEquals(agent.admits, [{
    version: 1,
    kind: "admit",
    containerId: "adm1",
    ifname: "eth0",
    pod: { namespace: "x", name: "web-0" },
    ips,
  }]);
  assertEquals(ips.length, 2);
  assertEquals(
    seenByAgent.sort(),
    [...ips].sort(),
    "addresses configured before the agent is asked",
  );
  const log = (await Deno.readTextFile(node.logFile)).trim().split("\n").map((l) => JSON.parse(l));
  assert(log[0].stepsMs.admit >= 500, `admit step ${JSON.stringify(log[0].stepsMs)}`);

  // DEL tells the agent, with the pod and the addresses IPAM held, after the veth is gone.
  const admitted = agent.admits[0].ips;
  const del = await node.exec({
    command: "DEL",
    containerId: "adm1",
    netns: pod.path,
    conf,
    args: ARGS,
  });
  assertEquals([del.code, del.stdout], [0, ""]);
  assertEquals(agent.releases, [{
    version: 1,
    kind: "release",
    containerId: "adm1",
    ifname: "eth0",
    pod: { namespace: "x", name: "web-0" },
    ips: admitted,
  }]);
  assertEquals(await node.allocations(), []);
});

Deno.test({
  name: "ADD without the pod in CNI_ARGS asks without it; without agentSocket it asks nobody",
  ignore,
}, async () => {
  await using dir = await socketDir();
  await using node = await testNode({ podCIDRs: POD_CIDRS });
  await using agent = await fakeAgent(dir.socket);
  const a = await node.pod(), b = await node.pod();
  const asked = await node.exec({
    command: "ADD",
    containerId: "anon1",
    netns: a.path,
    conf: node.conf({ agentSocket: dir.socket }),
    args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=x",
  });
  assertEquals(asked.code, 0, asked.stdout);
  assertEquals(agent.admits.map((r) => [r.containerId, "pod" in r]), [["anon1", false]]);
  const alone = await node.exec({
    command: "ADD",
    containerId: "alone1",
    netns: b.path,
    conf: node.conf(),
  });
  assertEquals(alone.code, 0, alone.stdout);
  assertEquals(agent.admits.length, 1, "ADD without agentSocket asked the agent");
});

Deno.test({
  name: "ADD fails with 11 naming the socket and leaves nothing when no agent answers",
  ignore,
}, async () => {
  await using dir = await socketDir();
  await using node = await testNode({ podCIDRs: POD_CIDRS });
  const conf = node.conf({ agentSocket: dir.socket });
  const links = await node.links();
  const attempt = async (id: string) => {
    const pod = await node.pod();
    const started = performance.now(), execAt = Date.now();
    const r = await node.exec({
      command: "ADD",
      containerId: id,
      netns: pod.path,
      conf,
      args: ARGS,
    });
    return { r, pod, ms: performance.now() - started, execAt, exitedAt: Date.now() };
  };
  const socket = dir.socket.replaceAll(".", "\\.");

  // No socket at all.
  const none = await attempt("gone1");
  assertEquals([none.r.code, none.r.json?.code], [1, 11], none.r.stdout);
  assertMatch(
    String(none.r.json?.msg),
    new RegExp(`agent at ${socket} did not admit the pod: no such socket`),
  );
  await assertNothingLeft(node, none.pod, links);

  // A socket file nobody listens on (an agent that was killed): refused.
  await Deno.mkdir(`${dir.path}/run`, { recursive: true });
  await staleSocket(dir.socket);
  const refused = await attempt("gone2");
  assertEquals(refused.r.json?.code, 11, refused.r.stdout);
  assertMatch(String(refused.r.json?.msg), new RegExp(`${socket} .*connection refused`));
  await assertNothingLeft(node, refused.pod, links);
  await Deno.remove(dir.socket);

  // An agent that takes the request and never answers: ADD gives up after its 5 s.
  using listener = Deno.listen({ transport: "unix", path: dir.socket });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) held.push(c);
  })();
  const hung = await attempt("gone3");
  assertEquals(hung.r.json?.code, 11, hung.r.stdout);
  assertMatch(
    String(hung.r.json?.msg),
    new RegExp(`${socket} did not admit the pod: no answer within 5000 ms`),
  );
  // The deadline, plus the release it sends on unwind (the request was delivered): 1 s more.
  // On failure, say where the time went: before the verb started (process start, module load,
  // this test feeding stdin), in it (the log line: stepsMs.failed is the admission's wait,
  // stepsMs.undo the unwind, agent the release's outcome), or after its log line (exit).
  const line = await lastLogLine(node);
  assert(
    hung.ms >= 5000 && hung.ms < 9000,
    `ADD took ${Math.round(hung.ms)} ms: ${timeline(hung, line)}`,
  );
  await assertNothingLeft(node, hung.pod, links);
  assertEquals(held.length, 2, `the hung agent got the admit and then the release; log: ${line}`);
  const logged = JSON.parse(line);
  assertEquals(logged.agent, "no answer within 1000 ms", "the release's outcome");
  assert(logged.stepsMs.failed >= 5000 && logged.stepsMs.undo >= 1000, `stepsMs: ${line}`);
  for (const c of held) c.close();
  listener.close();
  await accepting.catch(() => {});
});

Deno.test({
  name: "ADD fails with 11 and the agent's reason when it refuses, and the agent hears a release",
  ignore,
}, async () => {
  await using dir = await socketDir();
  await using node = await testNode({ podCIDRs: POD_CIDRS });
  await using agent = await fakeAgent(
    dir.socket,
    () => Promise.reject(new Error("nft batch failed")),
  );
  const pod = await node.pod();
  const links = await node.links();
  const conf = node.conf({ agentSocket: dir.socket });
  const r = await node.exec({
    command: "ADD",
    containerId: "no1",
    netns: pod.path,
    conf,
    args: ARGS,
  });
  assertEquals(r.json?.code, 11, r.stdout);
  assertMatch(String(r.json?.msg), /did not admit the pod: the agent refused: nft batch failed$/);
  await assertNothingLeft(node, pod, links);
  assertEquals(agent.releases.map((x) => x.containerId), ["no1"]);
});

Deno.test({
  name: "DEL succeeds with the agent away; STATUS is 50 naming the socket then, ok with it",
  ignore,
}, async () => {
  await using dir = await socketDir();
  await using node = await testNode({ podCIDRs: POD_CIDRS });
  const conf = node.conf({ agentSocket: dir.socket });
  const pod = await node.pod();
  {
    await using _agent = await fakeAgent(dir.socket);
    const add = await node.exec({ command: "ADD", containerId: "away1", netns: pod.path, conf });
    assertEquals(add.code, 0, add.stdout);
    assertEquals((await node.exec({ command: "STATUS", conf })).code, 0);
  }
  const status = await node.exec({ command: "STATUS", conf });
  assertEquals(status.json?.code, 50, status.stdout);
  assertMatch(
    String(status.json?.msg),
    new RegExp(`agent at ${dir.socket.replaceAll(".", "\\.")} does not answer: no such socket`),
  );
  const del = await node.exec({ command: "DEL", containerId: "away1", netns: pod.path, conf });
  assertEquals([del.code, del.stdout], [0, ""]);
  assertEquals(await node.allocations(), []);
  assertEquals(vethsOf(await node.links()), []);
  const line = JSON.parse((await Deno.readTextFile(node.logFile)).trim().split("\n").at(-1)!);
  assertEquals(line.verb, "DEL");
  assertMatch(line.agent, /no such socket/);
});

Deno.test({
  name: "A burst of 16 ADDs at 8-way is admitted: 16 distinct requests, every pod wired",
  ignore,
}, async () => {
  await using dir = await socketDir();
  await using node = await testNode({ podCIDRs: POD_CIDRS });
  let inFlight = 0, most = 0;
  await using agent = await fakeAgent(dir.socket, async () => {
    most = Math.max(most, ++inFlight);
    await new Promise((r) => setTimeout(r, 50));
    inFlight--;
  });
  const conf = node.conf({ agentSocket: dir.socket });
  const pods = await Promise.all([...Array(16).keys()].map(() => node.pod()));
  const results: { code: number; stdout: string }[] = [];
  for (let i = 0; i < 16; i += 8) {
    results.push(
      ...await Promise.all(
        pods.slice(i, i + 8).map((p, j) =>
          node.exec({
            command: "ADD",
            containerId: `b${i + j}`,
            netns: p.path,
            conf,
            args: `K8S_POD_NAMESPACE=x;K8S_POD_NAME=b${i + j}`,
          })
        ),
      ),
    );
  }
  for (const r of results) assertEquals(r.code, 0, r.stdout);
  assertEquals(new Set(agent.admits.map((a) => a.containerId)).size, 16);
  assertEquals(new Set(agent.admits.map((a) => a.ips[0])).size, 16);
  assertEquals(agent.admits.map((a) => a.pod?.name).sort(), pods.map((_, i) => `b${i}`).sort());
  assert(most > 1, `the agent never saw two admissions at once (most ${most})`);
  assertEquals((await node.allocations()).length, 32);
});

Deno.test({
  name: "ADD with admission loads no module but the plugin's own (no setTimeout)",
  ignore: ignore || !isBundle(),
}, async () => {
  await using dir = await socketDir();
  await using node = await testNode({ podCIDRs: POD_CIDRS });
  await using agent = await fakeAgent(dir.socket);
  // As tests/integration/plugin_cache_test.ts: V8 reports each code cache it deserializes.
  const plugin = `${dir.path}/mycni`;
  const [shebang, ...rest] = (await Deno.readTextFile(PLUGIN)).split("\n");
  const traced = shebang.replace("--v8-flags=", "--v8-flags=--profile-deserialization,");
  await Deno.writeTextFile(plugin, [traced, ...rest].join("\n"), { mode: 0o755 });
  const conf = JSON.stringify(node.conf({ agentSocket: dir.socket }));
  const run = async (env: Record<string, string>) => {
    const out = await runOutput(["nsenter", `--net=${node.netns.path}`, "--", plugin], {
      stdin: conf,
      env: {
        DENO_DIR: `${dir.path}/deno`,
        PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
        CNI_PATH: "/usr/lib/cni",
        ...env,
      },
    });
    const lines = `${out.stdout}\n${out.stderr}`.split("\n");
    const modules = lines.filter((l) => l.startsWith("[Deserializing from")).length;
    // The answer (V8's lines aside), so a failing run says why.
    const answer = lines.filter((l) => l.startsWith("{")).join("");
    return { code: out.code, modules, ...(out.code === 0 ? {} : { answer }) };
  };
  await run({ CNI_COMMAND: "VERSION", MYCNI_STORE_CODE_CACHE: "1" }); // writes the cache
  const pod = await node.pod();
  const add = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "mod1",
    CNI_NETNS: pod.path,
    CNI_IFNAME: "eth0",
  };
  assertEquals(await run(add), { code: 0, modules: 1 }, "ADD with admission");
  assertEquals(agent.admits.length, 1);
  assertEquals(await run({ CNI_COMMAND: "STATUS" }), { code: 0, modules: 1 }, "STATUS with ping");
  const del = { ...add, CNI_COMMAND: "DEL", CNI_NETNS: "" };
  assertEquals(await run(del), { code: 0, modules: 1 }, "DEL with release");
  assertEquals(agent.releases.length, 1);
});

Deno.test({
  name:
    "ADD is admitted while another process locks Deno's code cache: the wait for the answer is the kernel's, not an event-loop timer's",
  ignore: ignore || !isBundle(),
}, async () => {
  // A bundled plugin stores its V8 code cache in DENO_DIR's SQLite at the first turn of its event
  // loop, on the JS thread, waiting up to 5 s for another deno process's write lock. A deadline
  // timer in that loop fired only after the wait, and the request, queued behind it, was never
  // written: a healthy agent, and ADD failed with 11 "no answer within 5000 ms".
  await using dir = await socketDir();
  await using node = await testNode({ podCIDRs: POD_CIDRS });
  await using agent = await fakeAgent(dir.socket);
  const denoDir = `${dir.path}/deno`;
  const conf = JSON.stringify(node.conf({ agentSocket: dir.socket }));
  const run = (env: Record<string, string>) =>
    runOutput(["nsenter", `--net=${node.netns.path}`, "--", PLUGIN], {
      stdin: conf,
      env: {
        DENO_DIR: denoDir,
        PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
        CNI_PATH: "/usr/lib/cni",
        ...env,
      },
    });
  // Makes DENO_DIR's databases. The cache it stores is dropped, so the ADD would store it again;
  // ANALYZE spares the ADD's start the write Deno's PRAGMA optimize makes in a fresh database
  // (that start would wait for the lock too, ~40 s, but before any code of ours runs).
  assertEquals((await run({ CNI_COMMAND: "VERSION", MYCNI_STORE_CODE_CACHE: "1" })).code, 0);
  const cacheDb = `${denoDir}/v8_code_cache_v2`;
  {
    const db = new DatabaseSync(cacheDb);
    db.exec("DELETE FROM codecache; ANALYZE;");
    db.close();
  }
  const db = new DatabaseSync(cacheDb);
  const pod = await node.pod();
  let add;
  try {
    db.exec("BEGIN EXCLUSIVE");
    add = await run({
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "lock1",
      CNI_NETNS: pod.path,
      CNI_IFNAME: "eth0",
    });
  } finally {
    db.exec("ROLLBACK");
    db.close();
  }
  assertEquals(add.code, 0, `${add.stdout} ${add.stderr}`);
  assertEquals(agent.admits.map((a) => a.containerId), ["lock1"]);
});

function isBundle(): boolean {
  try {
    return new TextDecoder().decode(Deno.readFileSync(PLUGIN).subarray(0, 2)) === "#!";
  } catch {
    return false;
  }
}

/** Leaves a socket file at `path` that nobody listens on: a child listens and is killed. */
async function staleSocket(path: string): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `for await (const c of Deno.listen({ transport: "unix", path: "${path}" })) c.close();`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; !(await Deno.lstat(path).then(() => true, () => false)); i++) {
    assert(i < 1000, "the child never listened");
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill("SIGKILL");
  await child.status;
}
