// List + watch of one collection, kept as a map by key: list, watch from the list's
// resourceVersion, re-list on 410 Gone and on a timer, reconnect with backoff when the stream
// breaks (client-go's reflector, reduced to what the agent needs). The caller is told about
// every change that matters and about whether the watch is healthy. A collection that may not
// be served (a CRD's) can be absent: that is an empty collection, listed again on a timer.
import type { Logger } from "../log/logger.ts";
import { sleep } from "../time/sleep.ts";
import type { KubeClient } from "./client.ts";
import { GoneError, NotFoundError } from "./watch.ts";

/** What one object of the collection turned into: a value under a key, or why it was skipped. */
export type Parsed<T> =
  | { readonly ok: true; readonly key: string; readonly value: T }
  | { readonly ok: false; readonly key: string; readonly reason: string };

/** The collection, how to read its objects, and what to tell the caller. */
export interface InformerOptions<T> {
  /** Collection path, e.g. `/api/v1/pods`. */
  readonly path: string;
  /** Plural name for logs: "nodes", "pods". */
  readonly what: string;
  /** Turns an API object into the value kept; not ok means "not usable (yet)", logged once. */
  readonly parse: (obj: unknown) => Parsed<T>;
  /** The key of a deleted object (the object as the DELETED event carries it). */
  readonly keyOf: (obj: unknown) => string;
  /** Whether two values are the same for the caller (no change event then). */
  readonly same: (a: T, b: T) => boolean;
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Called after the map changed (or after every list, with `full`). */
  readonly onChange: (items: ReadonlyMap<string, T>, full: boolean) => void;
  /**
   * Called with the resourceVersion of every list and watch event (bookmarks and events that
   * change nothing included), after `onChange`: how far the caller has seen the collection.
   */
  readonly onProgress?: (resourceVersion: string) => void;
  /** Called when the watch goes up or down; `error` says why it is down. */
  readonly onState: (state: { watching: boolean; error?: string }) => void;
  /** Full re-list every this many ms (default 5 min, as flannel). */
  readonly relistMs?: number;
  /** First backoff after an error (doubles to 30 s). */
  readonly backoffMs?: number;
  /**
   * The collection may not be served (a CustomResourceDefinition's, which a cluster may not have
   * installed): a list answering 404 is then no failure but an empty collection, and the watch
   * counts as up (nothing is wrong). It is listed again every `retryMs` until it is served,
   * and after a watch answering 404 (the CRD removed).
   */
  readonly optional?: {
    readonly retryMs: number;
    /** Called when the list first answers 404 (false), and when it answers again (true). */
    readonly onServed: (served: boolean) => void;
  };
}

const MAX_BACKOFF_MS = 30_000;

/**
 * Runs until `signal` aborts. Never throws: errors are reported and retried. The map handed to
 * `onChange` is the informer's own and keeps changing: copy what must stay.
 *
 * @example
 * await runInformer(client, { path: "/api/v1/namespaces", what: "namespaces", parse, keyOf, same, ...cb });
 */
export async function runInformer<T>(client: KubeClient, opts: InformerOptions<T>): Promise<void> {
  const { items, skipped, apply } = itemStore(opts);
  const relistMs = opts.relistMs ?? 300_000;
  const firstBackoff = opts.backoffMs ?? 500;
  let backoff = firstBackoff;
  // Whether the collection is served; undefined until the first list says.
  let served: boolean | undefined;
  const fail = async (err: unknown, what: string) => {
    if (opts.signal.aborted) return;
    const error = `${what}: ${(err as Error).message}`;
    opts.log.error("watch failed", { resource: opts.what, error, retryInMs: backoff });
    opts.onState({ watching: false, error });
    await sleep(backoff, opts.signal);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  };
  // A collection not served is an empty one: said once (and handed over once), then looked for
  // again every retryMs.
  const absent = async (optional: NonNullable<InformerOptions<T>["optional"]>) => {
    if (served !== false) {
      opts.log.warn("collection not served: running without it", {
        resource: opts.what,
        path: opts.path,
        retryInMs: optional.retryMs,
      });
      served = false;
      skipped.clear();
      items.clear();
      optional.onServed(false);
      opts.onChange(items, true);
    }
    backoff = firstBackoff;
    opts.onState({ watching: true });
    await sleep(optional.retryMs, opts.signal);
  };

  while (!opts.signal.aborted) {
    let rv: string;
    try {
      const list = await client.list(opts.path, opts.signal);
      if (opts.optional && served !== true) {
        if (served === false) opts.log.info("collection served now", { resource: opts.what });
        served = true;
        opts.optional.onServed(true);
      }
      items.clear();
      for (const item of list.items) apply(item, false);
      const keys = new Set(list.items.map(opts.keyOf));
      for (const key of skipped.keys()) if (!keys.has(key)) skipped.delete(key);
      rv = list.resourceVersion;
      backoff = firstBackoff;
      opts.onChange(items, true);
      opts.onProgress?.(rv);
    } catch (err) {
      if (err instanceof NotFoundError && opts.optional) await absent(opts.optional);
      else await fail(err, `list ${opts.what}`);
      continue;
    }
    const relistAt = Date.now() + relistMs;
    while (!opts.signal.aborted && Date.now() < relistAt) {
      const stop = AbortSignal.any([opts.signal, AbortSignal.timeout(relistAt - Date.now())]);
      let openedAt = 0;
      let events = 0;
      try {
        const onOpen = () => {
          openedAt = Date.now();
          opts.onState({ watching: true });
        };
        for await (const ev of client.watch(opts.path, rv, { signal: stop, onOpen })) {
          events++;
          backoff = firstBackoff;
          if (ev.type === "ERROR") continue; // thrown by the client; here for the type checker
          rv = resourceVersionOf(ev.object) || rv;
          if (ev.type === "BOOKMARK") {
            opts.onProgress?.(rv);
            continue;
          }
          if (apply(ev.object, ev.type === "DELETED")) opts.onChange(items, false);
          opts.onProgress?.(rv);
        }
        // The server closed the stream (its timeout): watch again from where we are, unless it
        // keeps closing at once, which is an error like any other.
        if (events === 0 && Date.now() - openedAt < 1000) {
          await fail(new Error("stream closed at once"), `watch ${opts.what}`);
        }
      } catch (err) {
        if (opts.signal.aborted) return;
        if (stop.aborted) break; // time for the periodic re-list
        if (err instanceof NotFoundError && opts.optional) break; // removed: the list says
        if (err instanceof GoneError) {
          opts.log.info("watch expired, listing again", {
            resource: opts.what,
            resourceVersion: rv,
          });
          break;
        }
        // A watch that worked for a while and then broke (a dropped connection) is retried at
        // the first backoff: a quiet collection (no events) would otherwise keep the doubled
        // delay of every earlier failure.
        if (openedAt > 0 && (events > 0 || Date.now() - openedAt >= 1000)) backoff = firstBackoff;
        await fail(err, `watch ${opts.what}`);
      }
    }
  }
}

/**
 * The informer's map, and how an object or its deletion goes into it (returns whether the map
 * changed). Objects that do not parse are logged once per reason and kept out.
 */
function itemStore<T>(opts: InformerOptions<T>) {
  const items = new Map<string, T>();
  const skipped = new Map<string, string>();
  const apply = (obj: unknown, deleted: boolean): boolean => {
    if (deleted) {
      const key = opts.keyOf(obj);
      skipped.delete(key);
      return items.delete(key);
    }
    const parsed = opts.parse(obj);
    if (!parsed.ok) {
      if (skipped.get(parsed.key) !== parsed.reason) {
        opts.log.warn("object skipped", {
          resource: opts.what,
          key: parsed.key,
          reason: parsed.reason,
        });
        skipped.set(parsed.key, parsed.reason);
      }
      return items.delete(parsed.key);
    }
    skipped.delete(parsed.key);
    const old = items.get(parsed.key);
    if (old !== undefined && opts.same(old, parsed.value)) return false;
    items.set(parsed.key, parsed.value);
    return true;
  };
  return { items, skipped, apply };
}

/** `metadata.resourceVersion` of any object, or "" */
export function resourceVersionOf(obj: unknown): string {
  const rv = metadataOf(obj).resourceVersion;
  return typeof rv === "string" ? rv : "";
}

/** `metadata.name` of any object, or "" */
export function nameOf(obj: unknown): string {
  const name = metadataOf(obj).name;
  return typeof name === "string" ? name : "";
}

/** `namespace/name` of a namespaced object, or "" parts where missing. */
export function namespacedKeyOf(obj: unknown): string {
  const ns = metadataOf(obj).namespace;
  return `${typeof ns === "string" ? ns : ""}/${nameOf(obj)}`;
}

function metadataOf(obj: unknown): Record<string, unknown> {
  const o = typeof obj === "object" && obj !== null ? obj as Record<string, unknown> : {};
  const m = o.metadata;
  return typeof m === "object" && m !== null ? m as Record<string, unknown> : {};
}
