// Crash: SIGKILL the plugin at random points inside ADD and DEL, as a runtime's timeout or the
// OOM killer would, then check that a retried ADD succeeds without a duplicate, that DEL cleans
// up, that GC with the live attachments removes every orphan, and that the IPAM lock never
// wedges (flock is dropped by the kernel when the holder dies).
import { runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import { hostVethName } from "../../lib/plugin/plan.ts";
import { canRunPrivileged, ping, type TempNetns } from "../harness/netns.ts";
import {
  bare,
  PLUGIN,
  type PluginRun,
  resultIps,
  type TestNode,
  testNode,
} from "../harness/plugin.ts";

const ITERATIONS = 45;
const LOCK_DEADLINE_MS = 5000;
const vethsOf = (links: string[]) => links.filter((l) => /^veth[0-9a-f]{11}$/.test(l));

/**
 * Starts the plugin like a runtime does and SIGKILLs it after `delayMs`. nsenter (without
 * --pid) and the script's `env -S` shebang both exec, so the child's pid is the plugin itself.
 * Resolves to "killed" or, when the plugin finished first, "finished".
 */
async function killAfter(
  node: TestNode,
  env: Record<string, string>,
  conf: Record<string, unknown>,
  delayMs: number,
): Promise<"killed" | "finished"> {
  const child = new Deno.Command("nsenter", {
    args: [`--net=${node.netns.path}`, "--", PLUGIN],
    env: { PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(conf))).catch(() => {});
  await writer.close().catch(() => {});
  const done = child.status.then(() => "finished" as const);
  const timer = new Promise<"timer">((r) => setTimeout(() => r("timer"), delayMs));
  if (await Promise.race([done, timer]) === "finished") return "finished";
  try {
    child.kill("SIGKILL");
  } catch { /* exited between the race and the kill */ }
  const status = await child.status;
  return status.signal === "SIGKILL" ? "killed" : "finished";
}

const cniEnv = (command: string, containerId: string, netns: string) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: containerId,
  CNI_NETNS: netns,
  CNI_IFNAME: "eth0",
  CNI_ARGS: "",
  CNI_PATH: "/usr/lib/cni",
});

/** Where a killed ADD stopped, read from what it left: "none", "ipam", "ipam+veth", "wired". */
async function leftBy(node: TestNode, id: string, pod: TempNetns): Promise<string> {
  const ipam = (() => {
    try {
      return Deno.readTextFileSync(`${node.dataDir}/testnet/attachments/${id}@eth0`) !== "";
    } catch {
      return false;
    }
  })();
  const veth = hostVethName(id, "eth0");
  const host = await runOutput(node.netns.exec(["ip", "-j", "link", "show", "dev", veth]));
  const onBridge = host.code === 0 && host.stdout.includes('"master":"cni0"');
  const addrs = await podAddrs(pod);
  if (!ipam && host.code !== 0) return "nothing";
  if (host.code !== 0) return "ipam only";
  if (!onBridge) return "ipam+veth";
  return addrs.length ? "wired" : "ipam+veth on bridge";
}

async function podAddrs(pod: TempNetns): Promise<string[]> {
  const out = await runOutput(
    pod.exec(["ip", "-j", "addr", "show", "dev", "eth0", "scope", "global"]),
  );
  if (out.code !== 0) return [];
  const [link] = JSON.parse(out.stdout) as { addr_info: { local?: string; prefixlen: number }[] }[];
  return link.addr_info.filter((a) => a.local).map((a) => `${a.local}/${a.prefixlen}`).sort();
}

Deno.test({
  name: "SIGKILL at random points in ADD and DEL leaves nothing that retry, DEL and GC cannot heal",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await testNode({ podCIDRs: ["10.250.8.0/24", "fd00:250:8::/64"] });
  const conf = node.conf();
  const exec = (command: string, containerId: string, netns: string, extra = {}) =>
    node.exec({ command, containerId, netns, conf: { ...conf, ...extra } });
  // Kill points spread over a whole verb: time a few undisturbed ADDs and DELs first.
  const warm = await node.pod();
  const spans: Record<string, number[]> = { ADD: [], DEL: [] };
  for (let i = 0; i < 4; i++) {
    const t0 = performance.now();
    assertEquals((await exec("ADD", "warm", warm.path)).code, 0);
    const t1 = performance.now();
    assertEquals((await exec("DEL", "warm", warm.path)).code, 0);
    // The first ADD also makes the bridge: not a typical one.
    if (i > 0) spans.ADD.push(t1 - t0);
    spans.DEL.push(performance.now() - t1);
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const span = { ADD: median(spans.ADD), DEL: median(spans.DEL) };

  // Deterministic half of "the lock never wedges": a process dies holding the IPAM lock
  // (flock(1) takes the same flock(2) lock as the plugin; -o keeps it out of the `sleep`
  // child, so the lock dies with the flock process); an ADD waits for it, not forever.
  const holder = new Deno.Command("flock", {
    args: ["-o", `${node.dataDir}/testnet/lock`, "sleep", "8"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 200));
  const blocked = exec("ADD", "lock-wait", warm.path);
  const early = await Promise.race([
    blocked,
    new Promise((r) => setTimeout(() => r("waiting"), 500)),
  ]);
  assertEquals(early, "waiting", "ADD did not wait for the IPAM lock");
  holder.kill("SIGKILL");
  await holder.status;
  const t0 = performance.now();
  assertEquals((await blocked).code, 0);
  assert(performance.now() - t0 < LOCK_DEADLINE_MS, "ADD still blocked after the lock holder died");
  assertEquals((await exec("DEL", "lock-wait", warm.path)).code, 0);

  const figures = {
    killsInjected: 0,
    finishedFirst: 0,
    retries: 0,
    dels: 0,
    duplicates: 0,
    slowest: 0,
  };
  const live = new Map<string, { pod: TempNetns; result: PluginRun }>(); // what the runtime keeps
  const orphans: string[] = []; // killed and then abandoned: only GC will clean them
  const timed = async (what: string, fn: () => Promise<PluginRun>) => {
    const t0 = performance.now();
    const r = await fn();
    const ms = performance.now() - t0;
    figures.slowest = Math.max(figures.slowest, ms);
    assert(ms < LOCK_DEADLINE_MS, `${what} took ${ms.toFixed(0)} ms: is the lock wedged?`);
    return r;
  };
  const stopped = new Map<string, number>(); // where killed ADDs stopped -> how often
  const kill = async (verb: string, id: string, pod: TempNetns) => {
    // Mostly past start-up (most of a verb's time is the runtime starting), sometimes inside it.
    const typical = span[verb as "ADD" | "DEL"];
    const delay = typical *
      (Math.random() < 0.2 ? Math.random() * 0.3 : 0.3 + Math.random() * 0.65);
    const outcome = await killAfter(node, cniEnv(verb, id, pod.path), conf, delay);
    if (outcome === "killed") figures.killsInjected++;
    else figures.finishedFirst++;
    if (verb === "ADD") {
      const where = outcome === "killed" ? await leftBy(node, id, pod) : "finished";
      stopped.set(where, (stopped.get(where) ?? 0) + 1);
    }
  };

  for (let k = 0; k < ITERATIONS; k++) {
    const id = `crash-${k}`;
    const pod = await node.pod();
    await kill("ADD", id, pod);
    switch (k % 3) {
      case 0: {
        // The runtime's answer to a failed ADD: DEL. Nothing of this attachment may remain.
        const r = await timed(`DEL ${id}`, () => exec("DEL", id, pod.path));
        figures.dels++;
        assertEquals(r.code, 0, r.stdout);
        assertEquals(await podAddrs(pod), [], `${id} keeps addresses after DEL`);
        break;
      }
      case 1:
      case 2: {
        // A retried ADD succeeds and gets addresses nobody else holds.
        const r = await timed(`retried ADD ${id}`, () => exec("ADD", id, pod.path));
        figures.retries++;
        assertEquals(r.code, 0, `retried ADD ${id}: ${r.stdout}`);
        const mine = resultIps(r);
        assertEquals(await podAddrs(pod), [...mine].sort(), `${id} has what its ADD returned`);
        for (const [other, { result }] of live) {
          const shared = resultIps(result).filter((ip) => mine.includes(ip));
          if (shared.length) {
            figures.duplicates++;
            throw new Error(`${id} got ${shared} which ${other} holds`);
          }
        }
        live.set(id, { pod, result: r });
        if (k % 3 === 1) {
          // Then the pod goes away and its DEL is killed too: the runtime retries the DEL
          // (every other time), or forgets the pod and leaves it to GC.
          await kill("DEL", id, pod);
          live.delete(id);
          if (k % 2 === 0) {
            orphans.push(id);
            break;
          }
          const r = await timed(`retried DEL ${id}`, () => exec("DEL", id, pod.path));
          figures.dels++;
          assertEquals(r.code, 0, r.stdout);
          assertEquals(await podAddrs(pod), [], `${id} keeps addresses after a retried DEL`);
          const veth = hostVethName(id, "eth0");
          assert(!(await node.links()).includes(veth), `${veth} left after a retried DEL`);
          const held = await node.allocations();
          assert(!mine.map(bare).some((ip) => held.includes(ip)), `${id}'s IPs held after DEL`);
        }
      }
    }
  }
  // Orphaned `ip` children of killed plugins finish on their own; give them a moment.
  await new Promise((r) => setTimeout(r, 300));

  // GC with exactly the attachments the runtime still has removes every orphan.
  const valid = [...live.keys()].map((containerID) => ({ containerID, ifname: "eth0" }));
  const gc = await timed(
    "GC",
    () => node.exec({ command: "GC", conf: { ...conf, "cni.dev/valid-attachments": valid } }),
  );
  assertEquals([gc.code, gc.stdout], [0, ""]);
  const wantIps = [...live.values()].flatMap((l) => resultIps(l.result).map(bare)).sort();
  assertEquals(
    await node.allocations(),
    wantIps,
    "allocations after GC = the live pods' addresses",
  );
  assertEquals(vethsOf(await node.links()).length, live.size, "host veths after GC = live pods");
  const dir = `${node.dataDir}/testnet`;
  const index = [...Deno.readDirSync(`${dir}/attachments`)].map((e) => e.name).sort();
  assertEquals(index, [...live.keys()].map((id) => `${id}@eth0`).sort());
  const temps = [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith(".tmp."));
  assertEquals(temps, [], "temp files left after GC");
  // Every live pod still passes CHECK, then DEL frees everything.
  for (const [id, { pod, result }] of live) {
    const c = await exec("CHECK", id, pod.path, { prevResult: result.json });
    assertEquals(c.code, 0, `CHECK ${id}: ${c.stdout}`);
    assertEquals((await timed(`DEL ${id}`, () => exec("DEL", id, pod.path))).code, 0);
    figures.dels++;
  }
  const leaks = (await node.allocations()).length + vethsOf(await node.links()).length +
    [...Deno.readDirSync(`${dir}/attachments`)].length;
  console.log(
    `reliability crash: ${ITERATIONS} iterations, ${figures.killsInjected} SIGKILLs injected ` +
      `(${figures.finishedFirst} verbs finished before their kill; typical ADD ` +
      `${span.ADD.toFixed(0)} ms, DEL ${span.DEL.toFixed(0)} ms), ` +
      `${figures.retries} retried ADDs, ${figures.dels} DELs, GC freed ${orphans.length} orphans, ` +
      `duplicates ${figures.duplicates}, leaks ${leaks}, slowest verb after a kill ` +
      `${figures.slowest.toFixed(0)} ms (lock never wedged); killed ADDs left: ` +
      [...stopped].map(([where, n]) => `${where} ${n}`).join(", "),
  );
  assertEquals(leaks, 0);
  assert(figures.killsInjected >= ITERATIONS / 2, "too few kills landed inside a verb");
});

Deno.test({
  name: "SIGKILL inside the first ADD on a new node leaves a bridge the next ADD heals",
  ignore: !canRunPrivileged,
}, async () => {
  let kills = 0;
  for (let k = 0; k < 6; k++) {
    await using node = await testNode({ podCIDRs: ["10.250.8.0/24", "fd00:250:8::/64"] });
    const conf = node.conf();
    const first = await node.pod();
    // The first ADD also creates the bridge and waits for it to come up: kill anywhere in it.
    const delay = 40 + Math.random() * 160;
    if (await killAfter(node, cniEnv("ADD", "first", first.path), conf, delay) === "killed") {
      kills++;
    }
    const pod = await node.pod();
    const r = await node.exec({ command: "ADD", containerId: "second", netns: pod.path, conf });
    assertEquals(r.code, 0, r.stdout);
    assert(await ping(pod, "10.250.8.1"), `bridge broken after a kill at ${delay.toFixed(0)} ms`);
    assert(await ping(pod, "fd00:250:8::1"), `IPv6 gateway broken after ${delay.toFixed(0)} ms`);
    // The killed pod is cleaned by its DEL; nothing else is left.
    assertEquals(
      (await node.exec({ command: "DEL", containerId: "first", netns: "", conf })).code,
      0,
    );
    assertEquals(
      (await node.exec({ command: "DEL", containerId: "second", netns: "", conf })).code,
      0,
    );
    assertEquals(await node.allocations(), []);
    assertEquals(vethsOf(await node.links()), []);
  }
  console.log(
    `reliability crash (new node): 6 first ADDs, ${kills} killed inside it (the ADD that creates the bridge), every next ADD healed it, leaks 0`,
  );
});
