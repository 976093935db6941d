// How an object of a compiled plan differs from the one it replaces, when the compiler made it
// by changing that one (lib/policy/compile.ts keeps a peer set between compiles and changes the
// addresses where pods changed). The renderer (lib/policy/nft_sets.ts) then changes the previous
// set's elements rather than format ten thousand addresses again. Only a shortcut: plan objects
// stay plain data, and a renderer that never saw the previous object renders the new one whole.
import type { Ip } from "../ip/cidr.ts";
import type { AddressSet, PortMatch } from "./plan.ts";

/** A named port as the plan holds it. */
export type NamedPort = Extract<PortMatch, { kind: "named" }>;

/** An endpoint of a named port, as the plan holds it. */
export type NamedEndpoint = NamedPort["endpoints"][number];

/** A peer set made from `prev`: the addresses it gained and lost. */
export interface AddressSetChange {
  readonly prev: AddressSet;
  readonly added: readonly Ip[];
  readonly removed: readonly Ip[];
}

/** A named port made from `prev`: the endpoints it gained and lost. */
export interface NamedPortChange {
  readonly prev: NamedPort;
  readonly added: readonly NamedEndpoint[];
  readonly removed: readonly NamedEndpoint[];
}

const changes = new WeakMap<object, AddressSetChange | NamedPortChange>();

/**
 * Records that `next` is `change.prev` with the change applied. Only one step is kept: the
 * change that made `prev` is forgotten, so a chain of versions never holds old ones alive.
 *
 * @example
 * recordSetChange(next, { prev, added: [parseIp("10.244.2.7")], removed: [] });
 */
export function recordSetChange(next: AddressSet, change: AddressSetChange): void {
  changes.delete(change.prev);
  changes.set(next, change);
}

/**
 * Records that `next` is `change.prev` with the change applied (one step kept, as
 * {@linkcode recordSetChange}).
 *
 * @example
 * recordPortChange(next, { prev, added: [{ ip: "10.244.2.7", port: 8080 }], removed: [] });
 */
export function recordPortChange(next: NamedPort, change: NamedPortChange): void {
  changes.delete(change.prev);
  changes.set(next, change);
}

/**
 * The change that made `set`, when the compiler recorded one.
 *
 * @example
 * addressSetChange(plan.targets[0].ingress!.allow[0].peers as AddressSet)?.added; // [Ip]
 */
export function addressSetChange(set: AddressSet): AddressSetChange | undefined {
  return changes.get(set) as AddressSetChange | undefined;
}

/**
 * The change that made `port`, when the compiler recorded one.
 *
 * @example
 * namedPortChange(port)?.removed; // [{ ip: "10.244.2.7", port: 8080 }]
 */
export function namedPortChange(port: NamedPort): NamedPortChange | undefined {
  return changes.get(port) as NamedPortChange | undefined;
}
