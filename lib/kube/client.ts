// A minimal Kubernetes API client: list and watch a collection (nodes, pods, namespaces,
// networkpolicies) over fetch, with a bearer token and a CA bundle. Read-only: the agent never
// writes to the API. Enough for the agent, nothing more.
import { GoneError, NotFoundError, parseWatchEvent, readLines, type WatchEvent } from "./watch.ts";

/** Where the API server is and how to authenticate. */
export interface KubeConfig {
  /** Base URL, e.g. https://10.96.0.1:443 or http://127.0.0.1:6443 (tests). */
  readonly url: string;
  /** Bearer token file, re-read on every request (projected tokens rotate). */
  readonly tokenFile?: string;
  /** PEM CA bundle for https. */
  readonly caFile?: string;
}

/** In-cluster service account paths. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * The in-cluster config (KUBERNETES_SERVICE_HOST/PORT and the service account), or undefined
 * when not in a pod.
 *
 * @example
 * inClusterConfig({ KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" });
 */
export function inClusterConfig(env: Readonly<Record<string, string>>): KubeConfig | undefined {
  const host = env.KUBERNETES_SERVICE_HOST, port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) return undefined;
  const h = host.includes(":") ? `[${host}]` : host;
  return {
    url: `https://${h}:${port}`,
    tokenFile: `${SERVICE_ACCOUNT_DIR}/token`,
    caFile: `${SERVICE_ACCOUNT_DIR}/ca.crt`,
  };
}

/** A list response: the items and the resourceVersion to watch from. */
export interface ListResult {
  readonly items: unknown[];
  readonly resourceVersion: string;
}

/** Page size for lists, as client-go's reflector uses. */
const LIST_LIMIT = 500;

/** Talks to one API server; owns the TLS client, so close it. */
export class KubeClient implements Disposable {
  readonly #cfg: KubeConfig;
  readonly #http?: Deno.HttpClient;

  private constructor(cfg: KubeConfig, http?: Deno.HttpClient) {
    this.#cfg = cfg;
    this.#http = http;
  }

  /** Reads the CA file (when given) and returns a client. */
  static async create(cfg: KubeConfig): Promise<KubeClient> {
    const http = cfg.caFile && cfg.url.startsWith("https:")
      ? Deno.createHttpClient({ caCerts: [await Deno.readTextFile(cfg.caFile)] })
      : undefined;
    return new KubeClient({ ...cfg, url: cfg.url.replace(/\/+$/, "") }, http);
  }

  /** Lists all nodes, following `continue` pages. */
  listNodes(signal?: AbortSignal): Promise<ListResult> {
    return this.list("/api/v1/nodes", signal);
  }

  /**
   * Lists the collection at `path` (e.g. `/api/v1/pods`), following `continue` pages. A
   * collection the server does not serve (a CRD not installed) throws {@linkcode NotFoundError}.
   *
   * @example
   * const { items, resourceVersion } = await client.list("/api/v1/namespaces");
   */
  async list(path: string, signal?: AbortSignal): Promise<ListResult> {
    const items: unknown[] = [];
    let cont = "";
    for (;;) {
      const q = new URLSearchParams({ limit: String(LIST_LIMIT) });
      if (cont) q.set("continue", cont);
      const res = await this.#get(`${path}?${q}`, signal);
      const body = await res.json() as {
        items?: unknown[];
        metadata?: { resourceVersion?: string; continue?: string };
      };
      items.push(...(body.items ?? []));
      cont = body.metadata?.continue ?? "";
      if (!cont) return { items, resourceVersion: body.metadata?.resourceVersion ?? "" };
    }
  }

  /**
   * Watches the collection at `path` from `resourceVersion`, yielding events until the server
   * ends the stream. A 410 (as an HTTP status or as an ERROR event) throws
   * {@linkcode GoneError}; a collection the server does not serve (404) throws
   * {@linkcode NotFoundError}, as {@linkcode list} does.
   */
  async *watch(
    path: string,
    resourceVersion: string,
    opts: { signal?: AbortSignal; timeoutSeconds?: number; onOpen?: () => void } = {},
  ): AsyncGenerator<WatchEvent> {
    const q = new URLSearchParams({
      watch: "1",
      resourceVersion,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(opts.timeoutSeconds ?? 300),
    });
    const res = await this.#get(`${path}?${q}`, opts.signal);
    if (!res.body) throw new Error(`Watch of ${path} returned no body`);
    opts.onOpen?.();
    for await (const line of readLines(res.body)) {
      const ev = parseWatchEvent(line);
      if (ev.type === "ERROR") {
        if (ev.code === 410) throw new GoneError(ev.message);
        throw new Error(`Watch of ${path} got an error event: ${ev.code} ${ev.message}`);
      }
      yield ev;
    }
  }

  async #get(path: string, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.#cfg.tokenFile) {
      headers.authorization = `Bearer ${(await Deno.readTextFile(this.#cfg.tokenFile)).trim()}`;
    }
    const res = await fetch(`${this.#cfg.url}${path}`, { headers, signal, client: this.#http });
    if (res.ok) return res;
    const text = (await res.text().catch(() => "")).slice(0, 200);
    if (res.status === 410) throw new GoneError(text);
    if (res.status === 404) throw new NotFoundError(path.split("?")[0], text);
    throw new Error(`GET ${path} answered ${res.status}: ${text}`);
  }

  [Symbol.dispose](): void {
    this.#http?.close();
  }
}
