// A stand-in Kubernetes API server for the collections the agent reads: nodes, namespaces, pods,
// networkpolicies and clusternetworkpolicies (a CRD's: it can be made absent, 404, and present). List (with `continue` pages), chunked watch with resourceVersion, bookmarks
// and 410 Gone, serving objects shaped like the real API's JSON, plus a /_test control API to add,
// change and delete objects and to break watches. One resourceVersion sequence for everything, as
// etcd has. Plain HTTP by default, https when given a certificate and key; with a token, API
// requests need it.
//
// As a script: deno run -A tests/harness/fake_apiserver.ts --listen 10.0.0.1:6443 --nodes-file F
//   [--cert server.crt --key server.key] [--token-file F]
// Control: PUT /_test/<resource>/<name> or /_test/<resource>/<namespace>/<name> with the object
// (for nodes also a nodes-file entry; for namespaces also {"labels": {...}}), answered with the
// object as stored (its resourceVersion); DELETE the same, answered with the deletion's
// resourceVersion; POST /_test/drop | /_test/expire | /_test/garbage | /_test/bookmark;
// POST /_test/absent/<resource> (its CRD removed: objects deleted, watches closed, then 404) and
// POST /_test/served/<resource> (installed again, empty). `--absent RESOURCE` starts without it.
// POST /_test/bulk {"items": [{"resource", "object"}]} puts many objects (not nodes) at once.
import { parseArgs } from "node:util";
import { parseNodesFile, parseNodesFileEntry } from "../../lib/node/nodes_file.ts";

/** A nodes-file entry: `{"name","ip","ips"?,"podCIDRs","labels"?}`. */
export interface NodeEntry {
  readonly name: string;
  readonly ip?: string;
  readonly ips?: readonly string[];
  readonly podCIDRs?: readonly string[];
  /** More labels, over the ones every node gets (`kubernetes.io/hostname`, `.../os`, ...). */
  readonly labels?: Readonly<Record<string, string>>;
}

/** The collections served, by the plural name the control API uses. */
export const RESOURCES = {
  nodes: { path: "/api/v1/nodes", kind: "Node", apiVersion: "v1", namespaced: false },
  namespaces: {
    path: "/api/v1/namespaces",
    kind: "Namespace",
    apiVersion: "v1",
    namespaced: false,
  },
  pods: { path: "/api/v1/pods", kind: "Pod", apiVersion: "v1", namespaced: true },
  networkpolicies: {
    path: "/apis/networking.k8s.io/v1/networkpolicies",
    kind: "NetworkPolicy",
    apiVersion: "networking.k8s.io/v1",
    namespaced: true,
  },
  clusternetworkpolicies: {
    path: "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
    kind: "ClusterNetworkPolicy",
    apiVersion: "policy.networking.k8s.io/v1alpha2",
    namespaced: false,
  },
} as const;

/** A collection's plural name. */
export type Resource = keyof typeof RESOURCES;

/** A running fake API server. */
export interface FakeApiServer extends AsyncDisposable {
  /** http://host:port, or https://host:port when serving TLS */
  readonly url: string;
  /** Adds or updates a node (entry or full v1.Node); emits ADDED or MODIFIED. */
  upsert(node: NodeEntry | Record<string, unknown>): Record<string, unknown>;
  /** Deletes a node; emits DELETED. Returns whether it existed. */
  remove(name: string): boolean;
  /** Adds or updates any object (its metadata names it); emits ADDED or MODIFIED. */
  put(resource: Resource, obj: Record<string, unknown>): Record<string, unknown>;
  /** Deletes an object by `name` or `namespace/name`; emits DELETED. */
  del(resource: Resource, key: string): boolean;
  /** Breaks every open watch connection mid-stream. */
  drop(): void;
  /** Forgets history: the next watch (from any resourceVersion) gets a 410 ERROR event. */
  expire(): void;
  /** Sends a line that is not JSON on every open watch. */
  garbage(): void;
  /** Sends a BOOKMARK with the current resourceVersion on every open watch. */
  bookmark(): void;
  /**
   * `false`: the collection's CRD is removed (its objects deleted with DELETED events, its
   * watches closed; lists, watches and writes answer 404 from then on); `true`: installed again,
   * empty.
   */
  serve(resource: Resource, served: boolean): void;
  /** Open watch connections. */
  readonly watchers: number;
  /** Watch requests served so far. */
  readonly watchRequests: number;
  close(): Promise<void>;
}

/** Where to listen and what to start with. */
export interface FakeApiServerOptions {
  readonly hostname?: string;
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly nodes?: readonly NodeEntry[];
  /** PEM certificate (chain) and key: serve https instead of plain http. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** When set, API requests (not /_test) need `Authorization: Bearer <token>`, else 401. */
  readonly token?: string;
  /** Collections not served at the start (a CRD not installed): 404 until `serve()`. */
  readonly absent?: readonly Resource[];
}

type Obj = Record<string, unknown>;
interface Event {
  readonly rv: number;
  readonly resource: Resource;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly object: Obj;
}
interface Watcher {
  readonly controller: ReadableStreamDefaultController<Uint8Array>;
  readonly resource: Resource;
  /** Only watches that asked with allowWatchBookmarks=true get bookmarks, as on the real server. */
  readonly bookmarks: boolean;
}

const HISTORY = 20000;
const enc = new TextEncoder();

/** v1.Node JSON for a nodes-file entry, as the real API server would return it. */
export function nodeObject(entry: NodeEntry, rv: number, uid: string = crypto.randomUUID()): Obj {
  const ips = [...(entry.ip ? [entry.ip] : []), ...(entry.ips ?? [])];
  const podCIDRs = [...(entry.podCIDRs ?? [])];
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: entry.name,
      uid,
      resourceVersion: String(rv),
      creationTimestamp: now,
      labels: {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": entry.name,
        "kubernetes.io/os": "linux",
        ...entry.labels,
      },
    },
    spec: podCIDRs.length > 0 ? { podCIDR: podCIDRs[0], podCIDRs } : {},
    status: {
      addresses: [
        ...[...new Set(ips)].map((address) => ({ type: "InternalIP", address })),
        { type: "Hostname", address: entry.name },
      ],
      conditions: [{
        type: "Ready",
        status: "True",
        lastHeartbeatTime: now,
        lastTransitionTime: now,
        reason: "KubeletReady",
        message: "kubelet is posting ready status",
      }],
    },
  };
}

/**
 * Starts the server in this process.
 *
 * @example
 * await using api = startFakeApiServer({ nodes: [{ name: "n1", ip: "192.0.2.11", podCIDRs: ["10.244.1.0/24"] }] });
 * const res = await fetch(`${api.url}/api/v1/nodes`);
 */
export function startFakeApiServer(opts: FakeApiServerOptions = {}): FakeApiServer {
  let rv = 1000;
  let compacted = rv; // watches from a resourceVersion below this get 410
  let expireNext = false;
  let watchRequests = 0;
  const store = new Map<Resource, Map<string, Obj>>(
    (Object.keys(RESOURCES) as Resource[]).map((r) => [r, new Map()]),
  );
  const history: Event[] = [];
  const watchers = new Set<Watcher>();
  const absent = new Set<Resource>(opts.absent ?? []);

  const meta = (o: Obj) => o.metadata as Obj;
  const keyOf = (resource: Resource, o: Obj) => {
    const m = meta(o);
    return RESOURCES[resource].namespaced ? `${m.namespace}/${m.name}` : String(m.name);
  };
  const send = (w: Watcher, line: string) => {
    try {
      w.controller.enqueue(enc.encode(line + "\n"));
    } catch {
      watchers.delete(w);
    }
  };
  const emit = (resource: Resource, type: Event["type"], object: Obj) => {
    const ev = { rv, resource, type, object };
    history.push(ev);
    if (history.length > HISTORY) {
      compacted = history.splice(0, history.length - HISTORY).at(-1)!.rv;
    }
    const line = JSON.stringify({ type, object });
    for (const w of watchers) if (w.resource === resource) send(w, line);
  };
  const put = (resource: Resource, input: Obj): Obj => {
    if (absent.has(resource)) throw new NotServedError(resource);
    const spec = RESOURCES[resource];
    const obj = structuredClone(input);
    obj.apiVersion ??= spec.apiVersion;
    obj.kind ??= spec.kind;
    const m = (obj.metadata ??= {}) as Obj;
    if (typeof m.name !== "string" || m.name === "") throw new Error("metadata.name is required");
    if (spec.namespaced) m.namespace ??= "default";
    if (resource === "namespaces") {
      // The API server sets it on every namespace (since 1.21); policies select on it.
      m.labels = { ...(m.labels as Obj ?? {}), "kubernetes.io/metadata.name": m.name };
    }
    const key = keyOf(resource, obj);
    const old = store.get(resource)!.get(key);
    rv++;
    m.uid ??= old ? meta(old).uid : crypto.randomUUID();
    m.creationTimestamp ??= old ? meta(old).creationTimestamp : new Date().toISOString();
    m.resourceVersion = String(rv);
    store.get(resource)!.set(key, obj);
    emit(resource, old ? "MODIFIED" : "ADDED", obj);
    return obj;
  };
  const del = (resource: Resource, key: string): boolean => {
    const old = store.get(resource)!.get(key);
    if (!old) return false;
    store.get(resource)!.delete(key);
    rv++;
    const obj = structuredClone(old);
    meta(obj).resourceVersion = String(rv);
    emit(resource, "DELETED", obj);
    return true;
  };
  const upsert = (input: NodeEntry | Obj): Obj => {
    if ("metadata" in input || (input as Obj).kind === "Node") return put("nodes", input as Obj);
    const entry = parseNodesFileEntry(input);
    const old = store.get("nodes")!.get(entry.name);
    const obj = nodeObject(entry, rv + 1, old ? String(meta(old).uid) : undefined);
    if (old) meta(obj).creationTimestamp = meta(old).creationTimestamp;
    return put("nodes", obj);
  };
  const status = (code: number, reason: string, message: string) => ({
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    code,
  });
  const json = (body: unknown, code = 200) =>
    new Response(JSON.stringify(body), {
      status: code,
      headers: { "content-type": "application/json" },
    });

  const list = (resource: Resource, url: URL): Response => {
    const all = [...store.get(resource)!.entries()].sort(([a], [b]) => a < b ? -1 : 1)
      .map(([, o]) => o);
    const limit = Number(url.searchParams.get("limit") ?? "0");
    let start = 0, listRv = rv;
    const cont = url.searchParams.get("continue");
    if (cont) {
      const token = JSON.parse(atob(cont)) as { rv: number; start: number };
      start = token.start;
      listRv = token.rv;
    }
    const items = limit > 0 ? all.slice(start, start + limit) : all.slice(start);
    const more = limit > 0 && start + limit < all.length;
    const metadata: Obj = { resourceVersion: String(listRv) };
    if (more) metadata.continue = btoa(JSON.stringify({ rv: listRv, start: start + limit }));
    const spec = RESOURCES[resource];
    return json({ kind: `${spec.kind}List`, apiVersion: spec.apiVersion, metadata, items });
  };

  const watch = (resource: Resource, url: URL): Response => {
    watchRequests++;
    const from = url.searchParams.get("resourceVersion") ?? "";
    const timeout = Number(url.searchParams.get("timeoutSeconds") ?? "0");
    let w!: Watcher;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        w = {
          controller,
          resource,
          bookmarks: url.searchParams.get("allowWatchBookmarks") === "true",
        };
      },
      cancel() {
        watchers.delete(w);
        clearTimeout(timer);
      },
    });
    const gone = (msg: string) => {
      send(w, JSON.stringify({ type: "ERROR", object: status(410, "Expired", msg) }));
      w.controller.close();
    };
    if (expireNext) {
      expireNext = false;
      gone(`too old resource version: ${from} (${rv})`);
    } else if (from === "" || from === "0") {
      for (const obj of store.get(resource)!.values()) {
        send(w, JSON.stringify({ type: "ADDED", object: obj }));
      }
      watchers.add(w);
    } else if (Number(from) < compacted) {
      gone(`too old resource version: ${from} (${compacted})`);
    } else {
      for (const ev of history) {
        if (ev.rv > Number(from) && ev.resource === resource) {
          send(w, JSON.stringify({ type: ev.type, object: ev.object }));
        }
      }
      watchers.add(w);
    }
    if (watchers.has(w) && timeout > 0) {
      timer = setTimeout(() => {
        watchers.delete(w);
        try {
          w.controller.close();
        } catch { /* already closed */ }
      }, timeout * 1000);
    }
    return new Response(body, {
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
  };

  const byPath = new Map(
    (Object.entries(RESOURCES) as [Resource, { path: string }][]).map(([r, s]) => [s.path, r]),
  );

  const control = async (req: Request, path: string): Promise<Response | undefined> => {
    const parts = path.slice("/_test/".length).split("/").map(decodeURIComponent);
    const resource = parts[0] as Resource;
    if (req.method === "POST" && parts[0] === "bulk" && parts.length === 1) {
      // Many objects in one request (a busy cluster's world): {"items": [{resource, object}]}.
      const { items } = await req.json() as { items: { resource: Resource; object: Obj }[] };
      try {
        for (const { resource: r, object } of items) {
          if (!(r in RESOURCES) || r === "nodes") throw new Error(`cannot bulk-put ${r}`);
          put(r, object);
        }
      } catch (err) {
        return json(status(400, "BadRequest", (err as Error).message), 400);
      }
      return json({ done: "bulk", count: items.length, resourceVersion: String(rv) });
    }
    if (req.method === "POST" && parts.length === 1) {
      const actions: Record<string, () => void> = { drop, expire, garbage, bookmark };
      if (!actions[parts[0]]) return undefined;
      actions[parts[0]]();
      return json({ done: parts[0], watchers: watchers.size });
    }
    if (req.method === "POST" && parts.length === 2 && ["absent", "served"].includes(parts[0])) {
      if (!(parts[1] in RESOURCES)) return undefined;
      serve(parts[1] as Resource, parts[0] === "served");
      return json({ done: parts[0], resource: parts[1], resourceVersion: String(rv) });
    }
    if (!(resource in RESOURCES)) return undefined;
    const namespaced = RESOURCES[resource].namespaced;
    if (parts.length !== (namespaced ? 3 : 2)) return undefined;
    const [ns, name] = namespaced ? [parts[1], parts[2]] : [undefined, parts[1]];
    const key = namespaced ? `${ns}/${name}` : name;
    if (req.method === "DELETE") {
      return del(resource, key)
        ? json({ deleted: key, resourceVersion: String(rv) })
        : json(status(404, "NotFound", `${resource} "${key}" not found`), 404);
    }
    if (req.method !== "PUT") return undefined;
    const body = await req.json() as Obj;
    try {
      if (resource === "nodes") {
        if ("metadata" in body) meta(body).name ??= name;
        else body.name ??= name;
        return json(upsert(body));
      }
      // Shorthands: a namespace as {"labels": {...}}.
      const obj = "metadata" in body ? body : { metadata: { labels: body.labels ?? {} } };
      Object.assign(meta(obj), { name, ...(namespaced ? { namespace: ns } : {}) });
      return json(put(resource, obj));
    } catch (err) {
      if (err instanceof NotServedError) return notServed(resource);
      return json(status(400, "BadRequest", (err as Error).message), 400);
    }
  };

  const notServed = (resource: Resource) =>
    json(
      status(404, "NotFound", `the server could not find the requested resource (${resource})`),
      404,
    );

  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const path = url.pathname;
    if (path.startsWith("/_test/")) {
      return await control(req, path) ??
        json(status(404, "NotFound", `no route for ${req.method} ${path}`), 404);
    }
    if (opts.token !== undefined && req.headers.get("authorization") !== `Bearer ${opts.token}`) {
      return json(status(401, "Unauthorized", "Unauthorized"), 401);
    }
    const resource = byPath.get(path);
    if (req.method === "GET" && resource && absent.has(resource)) return notServed(resource);
    if (req.method === "GET" && resource) {
      const w = url.searchParams.get("watch");
      return w === "1" || w === "true" ? watch(resource, url) : list(resource, url);
    }
    const m = /^\/api\/v1\/nodes\/([^/]+)$/.exec(path);
    if (req.method === "GET" && m) {
      const node = store.get("nodes")!.get(decodeURIComponent(m[1]));
      return node ? json(node) : json(status(404, "NotFound", `nodes "${m[1]}" not found`), 404);
    }
    return json(status(404, "NotFound", `no route for ${req.method} ${path}`), 404);
  };

  function drop() {
    for (const w of watchers) {
      try {
        w.controller.error(new Error("connection dropped by /_test/drop"));
      } catch { /* already closed */ }
    }
    watchers.clear();
  }
  function expire() {
    compacted = rv + 1;
    history.length = 0;
    expireNext = true;
  }
  function garbage() {
    for (const w of watchers) send(w, "this is not json {");
  }
  function serve(resource: Resource, served: boolean) {
    if (served) {
      absent.delete(resource);
      return;
    }
    if (absent.has(resource)) return;
    // As the API server does when a CRD goes: its objects are deleted, then its watches end.
    for (const key of [...store.get(resource)!.keys()]) del(resource, key);
    absent.add(resource);
    for (const w of [...watchers]) {
      if (w.resource !== resource) continue;
      watchers.delete(w);
      try {
        w.controller.close();
      } catch { /* already closed */ }
    }
  }
  function bookmark() {
    for (const w of watchers) {
      if (!w.bookmarks) continue;
      const spec = RESOURCES[w.resource];
      send(
        w,
        JSON.stringify({
          type: "BOOKMARK",
          object: {
            kind: spec.kind,
            apiVersion: spec.apiVersion,
            metadata: {
              resourceVersion: String(rv),
              annotations: { "k8s.io/initial-events-end": "true" },
            },
          },
        }),
      );
    }
  }

  for (const entry of opts.nodes ?? []) upsert(entry);
  history.length = 0;
  compacted = rv;

  const server = Deno.serve({
    hostname: opts.hostname ?? "127.0.0.1",
    port: opts.port ?? 0,
    onListen: () => {},
    ...(opts.tls ? { cert: opts.tls.cert, key: opts.tls.key } : {}),
  }, handler);
  const addr = server.addr as Deno.NetAddr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const close = async () => {
    for (const w of watchers) {
      try {
        w.controller.close();
      } catch { /* already closed */ }
    }
    watchers.clear();
    await server.shutdown();
  };
  return {
    url: `${opts.tls ? "https" : "http"}://${host}:${addr.port}`,
    upsert,
    remove: (name) => del("nodes", name),
    put,
    del,
    drop,
    expire,
    garbage,
    bookmark,
    serve,
    get watchers() {
      return watchers.size;
    },
    get watchRequests() {
      return watchRequests;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A write to a collection that is not served. */
class NotServedError extends Error {
  constructor(resource: Resource) {
    super(`${resource} is not served`);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      listen: { type: "string", default: "127.0.0.1:6443" },
      "nodes-file": { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "token-file": { type: "string" },
      absent: { type: "string", multiple: true },
    },
  });
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(values.listen!);
  if (!m) {
    console.error(`--listen wants host:port, got ${values.listen}`);
    Deno.exit(2);
  }
  const nodes = values["nodes-file"]
    ? parseNodesFile(await Deno.readTextFile(values["nodes-file"]))
    : [];
  if (!values.cert !== !values.key) {
    console.error("--cert and --key go together");
    Deno.exit(2);
  }
  const tls = values.cert
    ? { cert: await Deno.readTextFile(values.cert), key: await Deno.readTextFile(values.key!) }
    : undefined;
  const token = values["token-file"]
    ? (await Deno.readTextFile(values["token-file"])).trim()
    : undefined;
  const absent = (values.absent ?? []).map((r) => {
    if (!(r in RESOURCES)) {
      console.error(`--absent wants one of ${Object.keys(RESOURCES).join(", ")}, got ${r}`);
      Deno.exit(2);
    }
    return r as Resource;
  });
  const api = startFakeApiServer({
    hostname: m[1],
    port: Number(m[2]),
    nodes,
    tls,
    token,
    absent,
  });
  console.log(`fake apiserver listening on ${api.url} with ${nodes.length} nodes`);
  const stop = async () => {
    await api.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}
