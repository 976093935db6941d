// runInformer() over a collection that may not be served (a CRD's, clusternetworkpolicies), against
// the fake API server (in-process, 127.0.0.1): absent is an empty collection said once, the
// watch counts as up, and the list is retried until the CRD is installed; a CRD removed later
// empties the map and goes back to retrying. No root needed.
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KubeClient } from "../../../lib/kube/client.ts";
import { nameOf, runInformer } from "../../../lib/kube/informer.ts";
import { createLogger } from "../../../lib/log/logger.ts";
import { startFakeApiServer } from "../../harness/fake_apiserver.ts";

const cnp = (name: string) => ({
  metadata: { name },
  spec: { tier: "Admin", priority: 1, subject: { namespaces: {} } },
});

interface Seen {
  names: string[];
  lists: number;
  watching?: boolean;
  errors: string[];
  served: boolean[];
  progress: string[];
  logs: string[];
}

async function withInformer(
  opts: { absent: boolean; optional: boolean },
  body: (
    api: ReturnType<typeof startFakeApiServer>,
    until: (what: string, cond: (s: Seen) => boolean) => Promise<void>,
    seen: Seen,
  ) => Promise<void>,
) {
  await using api = startFakeApiServer({
    absent: opts.absent ? ["clusternetworkpolicies"] : [],
  });
  using client = await KubeClient.create({ url: api.url });
  const stop = new AbortController();
  const seen: Seen = { names: [], lists: 0, errors: [], served: [], progress: [], logs: [] };
  const done = runInformer(client, {
    path: "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
    what: "clusternetworkpolicies",
    parse: (obj) => ({ ok: true, key: nameOf(obj), value: nameOf(obj) }),
    keyOf: nameOf,
    same: (a, b) => a === b,
    signal: stop.signal,
    log: createLogger((line) => seen.logs.push(line)),
    backoffMs: 20,
    onChange: (items, full) => {
      if (full) seen.lists++;
      seen.names = [...items.keys()].sort();
    },
    onProgress: (rv) => seen.progress.push(rv),
    onState: (s) => {
      seen.watching = s.watching;
      if (s.error) seen.errors.push(s.error);
    },
    ...(opts.optional
      ? { optional: { retryMs: 50, onServed: (s: boolean) => seen.served.push(s) } }
      : {}),
  });
  const until = async (what: string, cond: (s: Seen) => boolean) => {
    const deadline = Date.now() + 3000;
    while (!cond(seen)) {
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${what}; saw ${JSON.stringify(seen)}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    await body(api, until, seen);
  } finally {
    stop.abort();
    await done;
  }
}

const notServedLogs = (s: Seen) => s.logs.filter((l) => l.includes("collection not served"));

Deno.test("runInformer() with optional: a collection not served is empty, said once, and watched as up", async () => {
  await withInformer({ absent: true, optional: true }, async (_api, until, seen) => {
    await until("the absence reported", (s) => s.served.length === 1);
    assertEquals(seen.served, [false]);
    assertEquals(seen.names, []);
    assertEquals(seen.lists, 1);
    assertEquals(seen.watching, true);
    // Retried every 50 ms: several lists, one log line, one hand-over, no error.
    await new Promise((r) => setTimeout(r, 300));
    assertEquals(notServedLogs(seen).length, 1);
    assertEquals(seen.lists, 1);
    assertEquals(seen.errors, []);
    assertEquals(seen.progress, []);
  });
});

Deno.test("runInformer() with optional: a CRD installed later is picked up at the next retry", async () => {
  await withInformer({ absent: true, optional: true }, async (api, until, seen) => {
    await until("the absence reported", (s) => s.served.length === 1);
    api.serve("clusternetworkpolicies", true);
    api.put("clusternetworkpolicies", cnp("late"));
    await until("the policy listed", (s) => s.names.includes("late"));
    assertEquals(seen.served, [false, true]);
    assert(seen.logs.some((l) => l.includes("collection served now")));
    assert(seen.progress.length > 0, "a served list reports its resourceVersion");
    api.put("clusternetworkpolicies", cnp("watched"));
    await until("a watched ADDED", (s) => s.names.includes("watched"));
    assertEquals(seen.lists, 2);
  });
});

Deno.test("runInformer() with optional: a CRD removed empties the map and goes back to retrying", async () => {
  await withInformer({ absent: false, optional: true }, async (api, until, seen) => {
    api.put("clusternetworkpolicies", cnp("a"));
    await until("a listed or watched", (s) => s.names.includes("a"));
    assertEquals(seen.served, [true]);
    api.serve("clusternetworkpolicies", false);
    await until("the removal seen", (s) => s.served.length === 2);
    assertEquals(seen.served, [true, false]);
    assertEquals(seen.names, []);
    assertEquals(seen.watching, true);
    assertEquals(notServedLogs(seen).length, 1);
    api.serve("clusternetworkpolicies", true);
    api.put("clusternetworkpolicies", cnp("b"));
    await until("b after the re-install", (s) => s.names.includes("b"));
    assertEquals(seen.served, [true, false, true]);
  });
});

Deno.test("runInformer() without optional: a 404 is a failure of the source", async () => {
  await withInformer({ absent: true, optional: false }, async (_api, until, seen) => {
    await until("an error reported", (s) => s.errors.length > 0);
    assertEquals(seen.watching, false);
    assert(/404/.test(seen.errors[0]), seen.errors[0]);
    assertEquals(seen.lists, 0);
  });
});
