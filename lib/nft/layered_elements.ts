// A set's elements as another set's with a few keys gone and a few added (part of the table
// model, pure): the policy renderer changes a peer set of ten thousand addresses for one pod
// without copying them, and a table difference asks `elementDelta` for exactly what changed
// rather than comparing every element.

/**
 * Read-only elements: `base`'s, without the keys in `removed`, with `added` over them. The
 * layers stay one deep: changing a layered set layers the change on the same base.
 */
export class LayeredElements implements ReadonlyMap<string, string> {
  readonly base: ReadonlyMap<string, string>;
  /** Keys not in `base`, or there with another value. */
  readonly added: ReadonlyMap<string, string>;
  /** Keys of `base` that are gone (none of them in `added`). */
  readonly removed: ReadonlySet<string>;
  readonly size: number;

  constructor(
    base: ReadonlyMap<string, string>,
    added: ReadonlyMap<string, string>,
    removed: ReadonlySet<string>,
  ) {
    this.base = base;
    this.added = added;
    this.removed = removed;
    let size = base.size - removed.size;
    for (const k of added.keys()) if (!base.has(k)) size++;
    this.size = size;
  }

  get(key: string): string | undefined {
    const v = this.added.get(key);
    if (v !== undefined) return v;
    return this.removed.has(key) ? undefined : this.base.get(key);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  entries(): MapIterator<[string, string]> {
    return new LayeredEntries(this, (e) => e);
  }

  keys(): MapIterator<string> {
    return new LayeredEntries(this, (e) => e[0]);
  }

  values(): MapIterator<string> {
    return new LayeredEntries(this, (e) => e[1]);
  }

  [Symbol.iterator](): MapIterator<[string, string]> {
    return this.entries();
  }

  forEach(fn: (value: string, key: string, map: ReadonlyMap<string, string>) => void): void {
    for (const [k, v] of this.entries()) fn(v, k, this);
  }
}

/**
 * The entries of a {@linkcode LayeredElements}: the base's not gone nor replaced, then the added
 * ones. A plain iterator rather than a generator: table differences walk sets of ten thousand
 * elements, and a generator's steps cost several times a Map's.
 */
class LayeredEntries<T> extends Iterator<T, undefined, unknown> implements MapIterator<T> {
  readonly #of: LayeredElements;
  readonly #pick: (e: [string, string]) => T;
  #inner: MapIterator<[string, string]>;
  #inBase = true;

  constructor(of: LayeredElements, pick: (e: [string, string]) => T) {
    super();
    this.#of = of;
    this.#pick = pick;
    this.#inner = of.base.entries() as MapIterator<[string, string]>;
  }

  next(): IteratorResult<T, undefined> {
    if (this.#inBase) {
      for (;;) {
        const r = this.#inner.next();
        if (r.done) break;
        const k = r.value[0];
        if (!this.#of.removed.has(k) && !this.#of.added.has(k)) {
          return { value: this.#pick(r.value), done: false };
        }
      }
      this.#inBase = false;
      this.#inner = this.#of.added.entries() as MapIterator<[string, string]>;
    }
    const r = this.#inner.next();
    return r.done ? { value: undefined, done: true } : { value: this.#pick(r.value), done: false };
  }

  override [Symbol.iterator](): MapIterator<T> {
    return this;
  }
}

/**
 * `old` without the keys in `gone`, with `added` set: layered on `old` (or on `old`'s base when
 * it is layered itself), folded into a plain Map once the layer passes an eighth of the base.
 *
 * @example
 * const next = layerElements(prev.elements, new Set(["10.244.2.3"]), [["10.244.2.9", "10.244.2.9"]]);
 * elementDelta(prev.elements, next); // { gone: [["10.244.2.3", "10.244.2.3"]], added: [["10.244.2.9", "10.244.2.9"]] }
 */
export function layerElements(
  old: ReadonlyMap<string, string>,
  gone: ReadonlySet<string>,
  added: readonly (readonly [string, string])[],
): ReadonlyMap<string, string> {
  const layered = old instanceof LayeredElements;
  const base = layered ? old.base : old;
  const plus = new Map(layered ? old.added : []);
  const minus = new Set(layered ? old.removed : []);
  for (const k of gone) {
    plus.delete(k);
    if (base.has(k)) minus.add(k);
  }
  for (const [k, v] of added) {
    minus.delete(k);
    if (base.get(k) === v) plus.delete(k);
    else plus.set(k, v);
  }
  const next = new LayeredElements(base, plus, minus);
  if (plus.size + minus.size <= 64 + base.size / 8) return next;
  return new Map(next);
}

/** What changed from one set's elements to another's: entries gone (or replaced), entries new. */
export interface ElementDelta {
  /** Entries of the old elements whose key is gone or holds another value now. */
  readonly gone: readonly (readonly [string, string])[];
  /** Entries of the new elements whose key is new or holds another value now. */
  readonly added: readonly (readonly [string, string])[];
}

/**
 * The difference from `old` to `next` read off their layers when one is layered on the other's
 * base (what the policy renderer makes), in time proportional to the change; undefined when
 * their elements must be compared one by one.
 *
 * @example
 * elementDelta(set.elements, layerElements(set.elements, new Set(), [["10.244.2.9", "10.244.2.9"]]));
 * // { gone: [], added: [["10.244.2.9", "10.244.2.9"]] }
 */
export function elementDelta(
  old: ReadonlyMap<string, string>,
  next: ReadonlyMap<string, string>,
): ElementDelta | undefined {
  const keys = new Set<string>();
  const layers = (m: LayeredElements) => {
    for (const k of m.added.keys()) keys.add(k);
    for (const k of m.removed) keys.add(k);
  };
  if (next instanceof LayeredElements && next.base === old) layers(next);
  else if (old instanceof LayeredElements && old.base === next) layers(old);
  else if (
    old instanceof LayeredElements && next instanceof LayeredElements && old.base === next.base
  ) {
    layers(old);
    layers(next);
  } else if (old !== next) return undefined;
  const gone: [string, string][] = [], added: [string, string][] = [];
  for (const k of keys) {
    const a = old.get(k), b = next.get(k);
    if (a === b) continue;
    if (a !== undefined) gone.push([k, a]);
    if (b !== undefined) added.push([k, b]);
  }
  return { gone, added };
}
