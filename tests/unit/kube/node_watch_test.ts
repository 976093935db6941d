// The list + watch loop against the fake API server (in-process, 127.0.0.1): events, dropped
// connections, 410 Gone, garbage and bookmarks. No root needed.
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KubeClient } from "../../../lib/kube/client.ts";
import { watchNodes } from "../../../lib/kube/node_watch.ts";
import { createLogger } from "../../../lib/log/logger.ts";
import type { NodeInfo } from "../../../lib/kube/node.ts";
import { startFakeApiServer } from "../../harness/fake_apiserver.ts";

const n = (i: number) => ({
  name: `n${i}`,
  ip: `192.0.2.${10 + i}`,
  podCIDRs: [`10.244.${i}.0/24`],
});

/** Runs watchNodes against a fake server and lets the test wait for conditions on what it saw. */
async function withWatch(
  body: (
    api: ReturnType<typeof startFakeApiServer>,
    until: (what: string, cond: (names: string[]) => boolean) => Promise<void>,
    state: {
      lists: number;
      changes: number;
      watching: boolean;
      logs: string[];
      nodes: Map<string, NodeInfo>;
    },
  ) => Promise<void>,
) {
  await using api = startFakeApiServer({ nodes: [n(1), n(2)] });
  using client = await KubeClient.create({ url: api.url });
  const stop = new AbortController();
  let names: string[] = [];
  const state = {
    lists: 0,
    changes: 0,
    watching: false,
    logs: [] as string[],
    nodes: new Map<string, NodeInfo>(),
  };
  const done = watchNodes(client, {
    signal: stop.signal,
    log: createLogger((line) => state.logs.push(line)),
    backoffMs: 20,
    onChange: (nodes: ReadonlyMap<string, NodeInfo>, full) => {
      if (full) state.lists++;
      state.changes++;
      state.nodes = new Map(nodes);
      names = [...nodes.keys()].sort();
    },
    onState: (s) => state.watching = s.watching,
  });
  const until = async (what: string, cond: (names: string[]) => boolean) => {
    const deadline = Date.now() + 3000;
    while (!cond(names)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; have ${names}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    await body(api, until, state);
  } finally {
    stop.abort();
    await done;
  }
}

Deno.test("watchNodes() lists, then follows ADDED, MODIFIED and DELETED", async () => {
  await withWatch(async (api, until, state) => {
    await until("initial list", (ns) => ns.length === 2);
    api.upsert(n(3));
    await until("n3 added", (ns) => ns.includes("n3"));
    api.remove("n1");
    await until("n1 deleted", (ns) => !ns.includes("n1"));
    assertEquals(state.lists, 1);
    assert(state.watching);
  });
});

Deno.test("watchNodes() reconnects without re-listing after a dropped connection", async () => {
  await withWatch(async (api, until, state) => {
    await until("initial list", (ns) => ns.length === 2);
    while (api.watchers === 0) await new Promise((r) => setTimeout(r, 10));
    api.drop();
    api.upsert(n(4)); // happens while no watch is open: replayed from the resourceVersion
    await until("n4 after reconnect", (ns) => ns.includes("n4"));
    assertEquals(state.lists, 1);
    assert(api.watchRequests >= 2);
  });
});

Deno.test("watchNodes() lists again after 410 Gone", async () => {
  await withWatch(async (api, until, state) => {
    await until("initial list", (ns) => ns.length === 2);
    while (api.watchers === 0) await new Promise((r) => setTimeout(r, 10));
    api.expire();
    api.drop();
    api.remove("n2");
    await until("n2 gone after re-list", (ns) => !ns.includes("n2"));
    assertEquals(state.lists, 2);
  });
});

Deno.test("watchNodes() survives a garbage line and keeps bookmarks' resourceVersion", async () => {
  await withWatch(async (api, until, state) => {
    await until("initial list", (ns) => ns.length === 2);
    while (api.watchers === 0) await new Promise((r) => setTimeout(r, 10));
    api.bookmark();
    api.garbage();
    api.upsert(n(5));
    await until("n5 after garbage", (ns) => ns.includes("n5"));
    assert(state.logs.some((l) => l.includes("not JSON")));
  });
});

Deno.test("watchNodes() skips a node without podCIDR and picks it up once allocated", async () => {
  await withWatch(async (api, until, state) => {
    await until("initial list", (ns) => ns.length === 2);
    api.upsert({ name: "n6", ip: "192.0.2.16", podCIDRs: [] });
    api.upsert(n(7));
    await until("n7", (ns) => ns.includes("n7"));
    assert(!(await Promise.resolve(state.logs)).join("").includes('"node":"n7"'));
    assert(state.logs.some((l) => l.includes('"key":"n6"') && l.includes("no podCIDR")));
    api.upsert(n(6));
    await until("n6 allocated", (ns) => ns.includes("n6"));
  });
});

Deno.test("watchNodes() reports a relabelled node as a change, and an unchanged one not", async () => {
  await withWatch(async (api, until, state) => {
    await until("initial list", (ns) => ns.length === 2);
    const relabelled = () => state.nodes.get("n1")?.labels?.zone === "b";
    api.upsert({ ...n(1), labels: { zone: "b" } });
    const deadline = Date.now() + 3000;
    while (!relabelled()) {
      if (Date.now() > deadline) throw new Error("n1's new label never arrived");
      await new Promise((r) => setTimeout(r, 10));
    }
    const changes = state.changes;
    api.upsert({ ...n(1), labels: { zone: "b" } }); // MODIFIED, same labels: no change
    api.upsert(n(3));
    await until("n3", (ns) => ns.includes("n3"));
    assertEquals(state.changes, changes + 1);
  });
});

Deno.test("KubeClient.listNodes() follows continue pages", async () => {
  const nodes = Array.from({ length: 1203 }, (_, i) => n(i % 250));
  const unique = [...new Map(nodes.map((x, i) => [`m${i}`, { ...x, name: `m${i}` }])).values()];
  await using api = startFakeApiServer({ nodes: unique });
  using client = await KubeClient.create({ url: api.url });
  const list = await client.listNodes();
  assertEquals(list.items.length, 1203);
  assert(Number(list.resourceVersion) > 1000);
});
