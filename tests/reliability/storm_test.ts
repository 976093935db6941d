// Storm: 200 pods ADDed 8 at a time, then DELed 8 at a time, with CHECKs of other live pods in
// between, for two rounds (the second wraps the pool onto addresses the first one freed).
// Asserts no address is ever held twice, every pod has exactly what its ADD returned, and that
// afterwards nothing is left: no veth, no allocation, no index entry, and the bridge still works.
import { runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import { canRunPrivileged, ping, type TempNetns } from "../harness/netns.ts";
import { bare, type PluginRun, resultIps, testNode } from "../harness/plugin.ts";

const PODS = 200;
const WIDTH = 8;
const ROUNDS = 2;
const vethsOf = (links: string[]) => links.filter((l) => /^veth[0-9a-f]{11}$/.test(l));

/** Runs `fn` over `items`, `width` at a time. */
async function inParallel<T>(items: readonly T[], width: number, fn: (t: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: width }, worker));
}

/** Addresses (global scope) configured on eth0 in a pod, "" when eth0 is missing. */
async function configured(pod: TempNetns): Promise<string[] | undefined> {
  const out = await runOutput(
    pod.exec(["ip", "-j", "addr", "show", "dev", "eth0", "scope", "global"]),
  );
  if (out.code !== 0) return undefined;
  const [link] = JSON.parse(out.stdout) as { addr_info: { local: string; prefixlen: number }[] }[];
  return link.addr_info.filter((a) => a.local).map((a) => `${a.local}/${a.prefixlen}`).sort();
}

Deno.test({
  name: "200 pods ADDed and DELed 8 at a time with CHECKs never share an address and leave nothing",
  ignore: !canRunPrivileged,
}, async () => {
  await using node = await testNode({ podCIDRs: ["10.250.7.0/24", "fd00:250:7::/64"] });
  const conf = node.conf();
  const pods: TempNetns[] = [];
  await inParallel([...Array(PODS).keys()], WIDTH, async (i) => void (pods[i] = await node.pod()));
  const figures = { adds: 0, dels: 0, checks: 0, duplicates: 0, mismatches: 0 };
  const problems: string[] = [];
  const started = performance.now();
  for (let round = 0; round < ROUNDS; round++) {
    const id = (i: number) => `storm-${round}-${i}`;
    const results = new Map<number, PluginRun>(); // pod index -> its ADD's result
    const owner = new Map<string, number>(); // address -> the live pod holding it
    // The runtime never runs two verbs for one container at once: one queue per pod.
    const queues = new Map<number, Promise<unknown>>();
    const serial = <T>(i: number, fn: () => Promise<T>): Promise<T> => {
      const run = (queues.get(i) ?? Promise.resolve()).then(fn);
      queues.set(i, run.catch(() => {}));
      return run;
    };
    const checkOne = async () => {
      const live = [...results.keys()];
      if (!live.length) return;
      const i = live[Math.floor(Math.random() * live.length)];
      await serial(i, async () => {
        const prev = results.get(i);
        if (!prev) return; // DELed while we queued
        const r = await node.exec({
          command: "CHECK",
          containerId: id(i),
          netns: pods[i].path,
          conf: { ...conf, prevResult: prev.json },
        });
        figures.checks++;
        if (r.code !== 0) problems.push(`CHECK ${id(i)}: ${r.stdout}`);
      });
    };
    const order = [...pods.keys()];
    await inParallel(order, WIDTH, async (i) => {
      const r = await serial(
        i,
        () => node.exec({ command: "ADD", containerId: id(i), netns: pods[i].path, conf }),
      );
      figures.adds++;
      if (r.code !== 0) return void problems.push(`ADD ${id(i)}: ${r.stdout}`);
      for (const ip of resultIps(r).map(bare)) {
        // No DEL runs in this phase, so an address already owned is a duplicate right now.
        if (owner.has(ip)) {
          figures.duplicates++;
          problems.push(`${ip} given to ${id(i)} while ${id(owner.get(ip)!)} holds it`);
        }
        owner.set(ip, i);
      }
      results.set(i, r);
      if (i % 2 === 0) await checkOne();
    });
    // What every pod really has is what its ADD returned; the node holds one veth per pod.
    await inParallel(order, WIDTH, async (i) => {
      const have = await configured(pods[i]);
      const want = resultIps(results.get(i)!).sort();
      if (JSON.stringify(have) !== JSON.stringify(want)) {
        figures.mismatches++;
        problems.push(`${id(i)} has ${have}, ADD said ${want}`);
      }
    });
    assertEquals(owner.size, PODS * 2, "distinct addresses after the ADD phase");
    assertEquals((await node.allocations()).length, PODS * 2);
    assertEquals(vethsOf(await node.links()).length, PODS);
    await inParallel(order, WIDTH, async (i) => {
      const r = await serial(i, async () => {
        const r = await node.exec({
          command: "DEL",
          containerId: id(i),
          netns: pods[i].path,
          conf,
        });
        results.delete(i);
        return r;
      });
      figures.dels++;
      if (r.code !== 0) problems.push(`DEL ${id(i)}: ${r.stdout}`);
      if (i % 2 === 1) await checkOne();
    });
    assert(problems.length === 0, `round ${round}:\n${problems.join("\n")}`);
    assertEquals(await node.allocations(), [], `allocations left after round ${round}`);
    assertEquals(vethsOf(await node.links()), [], `veths left after round ${round}`);
    const index = [...Deno.readDirSync(`${node.dataDir}/testnet/attachments`)].map((e) => e.name);
    assertEquals(index, [], `attachment index left after round ${round}`);
    await inParallel(order, WIDTH, async (i) => {
      if (await configured(pods[i]) !== undefined) problems.push(`${id(i)} still has eth0`);
    });
  }
  // The bridge still serves a fresh pod.
  const fresh = await node.pod();
  const r = await node.exec({
    command: "ADD",
    containerId: "storm-fresh",
    netns: fresh.path,
    conf,
  });
  assertEquals(r.code, 0, r.stdout);
  assert(await ping(fresh, "10.250.7.1"), "fresh pod cannot ping the IPv4 gateway");
  assert(await ping(fresh, "fd00:250:7::1"), "fresh pod cannot ping the IPv6 gateway");
  assertEquals(
    (await node.exec({ command: "DEL", containerId: "storm-fresh", netns: "", conf })).code,
    0,
  );
  const leaks = (await node.allocations()).length + vethsOf(await node.links()).length;
  console.log(
    `reliability storm: ${ROUNDS} rounds x ${PODS} pods, ${WIDTH} at a time: ` +
      `${figures.adds} ADDs, ${figures.dels} DELs, ${figures.checks} CHECKs, ` +
      `duplicates ${figures.duplicates}, mismatches ${figures.mismatches}, leaks ${leaks} ` +
      `(${((performance.now() - started) / 1000).toFixed(1)} s)`,
  );
  assert(problems.length === 0, problems.join("\n"));
  assertEquals(leaks, 0);
});
