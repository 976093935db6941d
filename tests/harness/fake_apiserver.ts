// A stand-in Kubernetes API server for nodes: list, chunked watch with resourceVersion,
// bookmarks and 410 Gone, serving objects shaped like real v1.Node JSON, plus a /_test control
// API to add and delete nodes and to break watches. Plain HTTP by default, https when given a
// certificate and key (the in-cluster client insists on https with the service account's CA); no
// auth either way.
//
// As a script: deno run -A tests/harness/fake_apiserver.ts --listen 10.0.0.1:6443 --nodes-file F
//   [--cert server.crt --key server.key] [--token-file F]
// Control: PUT /_test/nodes/<name> (a nodes-file entry or a v1.Node), DELETE /_test/nodes/<name>,
// POST /_test/drop | /_test/expire | /_test/garbage | /_test/bookmark.
import { parseArgs } from "node:util";
import { parseNodesFile, parseNodesFileEntry } from "../../lib/node/nodes_file.ts";

/** A nodes-file entry: `{"name","ip","ips"?,"podCIDRs"}`. */
export interface NodeEntry {
  readonly name: string;
  readonly ip?: string;
  readonly ips?: readonly string[];
  readonly podCIDRs?: readonly string[];
}

/** A running fake API server. */
export interface FakeApiServer extends AsyncDisposable {
  /** http://host:port, or https://host:port when serving TLS */
  readonly url: string;
  /** Adds or updates a node (entry or full v1.Node); emits ADDED or MODIFIED. */
  upsert(node: NodeEntry | Record<string, unknown>): Record<string, unknown>;
  /** Deletes a node; emits DELETED. Returns whether it existed. */
  remove(name: string): boolean;
  /** Breaks every open watch connection mid-stream. */
  drop(): void;
  /** Forgets history: the next watch (from any resourceVersion) gets a 410 ERROR event. */
  expire(): void;
  /** Sends a line that is not JSON on every open watch. */
  garbage(): void;
  /** Sends a BOOKMARK with the current resourceVersion on every open watch. */
  bookmark(): void;
  /** Open watch connections. */
  readonly watchers: number;
  /** Watch requests served so far. */
  readonly watchRequests: number;
  close(): Promise<void>;
}

/** Where to listen and what nodes to start with. */
export interface FakeApiServerOptions {
  readonly hostname?: string;
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly nodes?: readonly NodeEntry[];
  /** PEM certificate (chain) and key: serve https instead of plain http. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** When set, API requests (not /_test) need `Authorization: Bearer <token>`, else 401. */
  readonly token?: string;
}

type Obj = Record<string, unknown>;
interface Event {
  readonly rv: number;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly object: Obj;
}

const HISTORY = 5000;
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
  const nodes = new Map<string, Obj>();
  const history: Event[] = [];
  const watchers = new Set<ReadableStreamDefaultController<Uint8Array>>();
  // Only watches that asked with allowWatchBookmarks=true get bookmarks, as on the real server.
  const wantsBookmarks = new WeakSet<ReadableStreamDefaultController<Uint8Array>>();

  const meta = (o: Obj) => o.metadata as Obj;
  const send = (c: ReadableStreamDefaultController<Uint8Array>, line: string) => {
    try {
      c.enqueue(enc.encode(line + "\n"));
    } catch {
      watchers.delete(c);
    }
  };
  const emit = (type: Event["type"], object: Obj) => {
    const ev = { rv, type, object };
    history.push(ev);
    if (history.length > HISTORY) {
      compacted = history.splice(0, history.length - HISTORY).at(-1)!.rv;
    }
    const line = JSON.stringify({ type, object });
    for (const c of watchers) send(c, line);
  };
  const upsert = (input: NodeEntry | Obj): Obj => {
    const full = "metadata" in input || (input as Obj).kind === "Node";
    const name = full ? String(meta(input as Obj).name) : (input as NodeEntry).name;
    const old = nodes.get(name);
    rv++;
    let obj: Obj;
    if (full) {
      obj = structuredClone(input as Obj);
      obj.apiVersion ??= "v1";
      obj.kind ??= "Node";
      const m = meta(obj);
      m.uid ??= old ? meta(old).uid : crypto.randomUUID();
      m.creationTimestamp ??= old ? meta(old).creationTimestamp : new Date().toISOString();
      m.resourceVersion = String(rv);
    } else {
      const entry = parseNodesFileEntry(input);
      obj = nodeObject(
        { name, ips: entry.ips, podCIDRs: entry.podCIDRs },
        rv,
        old ? String(meta(old).uid) : undefined,
      );
      if (old) meta(obj).creationTimestamp = meta(old).creationTimestamp;
    }
    nodes.set(name, obj);
    emit(old ? "MODIFIED" : "ADDED", obj);
    return obj;
  };
  const remove = (name: string): boolean => {
    const old = nodes.get(name);
    if (!old) return false;
    nodes.delete(name);
    rv++;
    const obj = structuredClone(old);
    meta(obj).resourceVersion = String(rv);
    emit("DELETED", obj);
    return true;
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

  const list = (url: URL): Response => {
    const all = [...nodes.values()].sort((a, b) =>
      String(meta(a).name) < String(meta(b).name) ? -1 : 1
    );
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
    return json({ kind: "NodeList", apiVersion: "v1", metadata, items });
  };

  const watch = (url: URL): Response => {
    watchRequests++;
    const from = url.searchParams.get("resourceVersion") ?? "";
    const timeout = Number(url.searchParams.get("timeoutSeconds") ?? "0");
    const bookmarks = url.searchParams.get("allowWatchBookmarks") === "true";
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
      cancel() {
        watchers.delete(controller);
        clearTimeout(timer);
      },
    });
    const gone = (msg: string) => {
      send(controller, JSON.stringify({ type: "ERROR", object: status(410, "Expired", msg) }));
      controller.close();
    };
    if (expireNext) {
      expireNext = false;
      gone(`too old resource version: ${from} (${rv})`);
    } else if (from === "" || from === "0") {
      for (const obj of nodes.values()) {
        send(controller, JSON.stringify({ type: "ADDED", object: obj }));
      }
      watchers.add(controller);
    } else if (Number(from) < compacted) {
      gone(`too old resource version: ${from} (${compacted})`);
    } else {
      for (const ev of history) {
        if (ev.rv > Number(from)) {
          send(controller, JSON.stringify({ type: ev.type, object: ev.object }));
        }
      }
      watchers.add(controller);
    }
    if (watchers.has(controller)) {
      if (bookmarks) wantsBookmarks.add(controller);
      if (timeout > 0) {
        timer = setTimeout(() => {
          watchers.delete(controller);
          try {
            controller.close();
          } catch { /* already closed */ }
        }, timeout * 1000);
      }
    }
    return new Response(body, {
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
  };

  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const path = url.pathname;
    if (
      opts.token !== undefined && !path.startsWith("/_test/") &&
      req.headers.get("authorization") !== `Bearer ${opts.token}`
    ) {
      return json(status(401, "Unauthorized", "Unauthorized"), 401);
    }
    if (req.method === "GET" && path === "/api/v1/nodes") {
      return url.searchParams.get("watch") === "1" || url.searchParams.get("watch") === "true"
        ? watch(url)
        : list(url);
    }
    let m = /^\/api\/v1\/nodes\/([^/]+)$/.exec(path);
    if (req.method === "GET" && m) {
      const node = nodes.get(decodeURIComponent(m[1]));
      return node ? json(node) : json(status(404, "NotFound", `nodes "${m[1]}" not found`), 404);
    }
    m = /^\/_test\/nodes\/([^/]+)$/.exec(path);
    if (m && req.method === "PUT") {
      const body = await req.json() as Obj;
      const name = decodeURIComponent(m[1]);
      if ("metadata" in body) meta(body).name ??= name;
      else body.name ??= name;
      try {
        return json(upsert(body));
      } catch (err) {
        return json(status(400, "BadRequest", (err as Error).message), 400);
      }
    }
    if (m && req.method === "DELETE") {
      const name = decodeURIComponent(m[1]);
      return remove(name)
        ? json({ deleted: name })
        : json(status(404, "NotFound", `nodes "${name}" not found`), 404);
    }
    if (req.method === "POST" && path.startsWith("/_test/")) {
      const action = path.slice("/_test/".length);
      const actions: Record<string, () => void> = { drop, expire, garbage, bookmark };
      if (actions[action]) {
        actions[action]();
        return json({ done: action, watchers: watchers.size });
      }
    }
    return json(status(404, "NotFound", `no route for ${req.method} ${path}`), 404);
  };

  function drop() {
    for (const c of watchers) {
      try {
        c.error(new Error("connection dropped by /_test/drop"));
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
    for (const c of watchers) send(c, "this is not json {");
  }
  function bookmark() {
    const line = JSON.stringify({
      type: "BOOKMARK",
      object: {
        kind: "Node",
        apiVersion: "v1",
        metadata: {
          resourceVersion: String(rv),
          annotations: { "k8s.io/initial-events-end": "true" },
        },
      },
    });
    for (const c of watchers) if (wantsBookmarks.has(c)) send(c, line);
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
    for (const c of watchers) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    watchers.clear();
    await server.shutdown();
  };
  return {
    url: `${opts.tls ? "https" : "http"}://${host}:${addr.port}`,
    upsert,
    remove,
    drop,
    expire,
    garbage,
    bookmark,
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

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      listen: { type: "string", default: "127.0.0.1:6443" },
      "nodes-file": { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "token-file": { type: "string" },
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
  const api = startFakeApiServer({ hostname: m[1], port: Number(m[2]), nodes, tls, token });
  console.log(`fake apiserver listening on ${api.url} with ${nodes.length} nodes`);
  const stop = async () => {
    await api.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}
