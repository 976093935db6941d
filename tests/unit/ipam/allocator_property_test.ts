// Property-based tests of the allocator (lib/ipam/allocator.ts) over an in-memory Store: random
// sequences of ADD (allocate), retried ADD and DEL (release) on random /16-/30 IPv4 and
// /64-/120 IPv6 pools, single- and dual-stack, checked after every step against a model that
// computes what is right its own way (tests/harness/ip_oracle.ts), not with lib/ip/cidr.ts or
// the allocator's helpers. The only error an ADD may end with is a full pool, and only when the
// model says the pool is full.
// deno-lint-ignore-file no-import-prefix -- test-only npm package, pinned where it is used
import fc from "npm:fast-check@4.10.2";
import { allocate, type Pool, poolOf, release } from "../../../lib/ipam/allocator.ts";
import type { Cidr, Ip } from "../../../lib/ip/cidr.ts";
import { CniError, ErrorCode } from "../../../lib/cni/errors.ts";
import type { Owner, Store } from "../../../lib/ipam/store.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { MemoryStore } from "../../harness/memory_store.ts";
import {
  cidrText,
  type OracleIp,
  podAddressesAfter,
  podCapacity,
  roleOf,
  textOf,
  within,
} from "../../harness/ip_oracle.ts";

/** A pod network of `family` with a prefix in [min, max], at a random place. */
function network(family: 4 | 6, min: number, max: number): fc.Arbitrary<Cidr> {
  const bits = family === 4 ? 32 : 128;
  return fc.tuple(fc.bigInt({ min: 0n, max: (1n << BigInt(bits)) - 1n }), fc.integer({ min, max }))
    .map(([value, prefix]) => {
      // Clear the host bits by shifting them out and back.
      const host = BigInt(bits - prefix);
      return { family, network: (value >> host) << host, prefix };
    });
}
// Small networks often, so pools fill up, wrap around and run dry inside one run.
const v4 = fc.oneof(network(4, 26, 30), network(4, 16, 30));
const v6 = fc.oneof(network(6, 116, 120), network(6, 64, 120));
const pools = fc.oneof(
  v4.map((c) => [c]),
  v6.map((c) => [c]),
  fc.tuple(v4, v6).map(([a, b]) => [a, b]),
);

type Op = { kind: "add" | "del"; pod: number };
const ops = fc.array(
  fc.record({
    kind: fc.constantFrom("add", "add", "del") as fc.Arbitrary<Op["kind"]>,
    pod: fc.nat(40),
  }),
  { minLength: 1, maxLength: 120 },
);

const owner = (pod: number): Owner => ({ containerId: `c${pod}`, ifname: "eth0" });

/** The one error an ADD may end with: the pool has no address left (11, and it says so). */
function isPoolFull(err: unknown): boolean {
  return err instanceof CniError && err.code === ErrorCode.TryAgainLater &&
    /^No IP addresses available in /.test(err.message);
}

/** The pools as the plugin makes them, their gateway checked against the model's. */
function poolsFor(cidrs: readonly Cidr[]): Pool[] {
  return cidrs.map((cidr) => {
    const pool = poolOf(cidr);
    assertEquals(roleOf(cidr, pool.gateway), "gateway", `poolOf(${cidrText(cidr)}).gateway`);
    return pool;
  });
}

/** `ip` may go to a pod of `pool`: inside it, not its network, gateway or broadcast. */
function assertPodAddress(pool: Pool, ip: OracleIp): void {
  const role = roleOf(pool.cidr, ip);
  assertEquals(role, "pod", `${textOf(ip)} from ${cidrText(pool.cidr)} is its ${role}`);
}

/** The store's reservations as "ip=container", sorted. */
const reservations = (store: MemoryStore) =>
  [...store.reservations].map(([ip, o]) => `${ip}=${o.containerId}`).sort();

Deno.test("allocate() and release() keep every address unique, handable and exactly accounted", async () => {
  await fc.assert(
    fc.asyncProperty(pools, ops, async (cidrs, steps) => {
      const store = new MemoryStore();
      const ps = poolsFor(cidrs);
      const model = new Map<number, OracleIp[]>(); // pod -> what it holds, one per pool
      for (const { kind, pod } of steps) {
        if (kind === "add") {
          const before = model.get(pod);
          const held = [...model.values()].flat();
          const full = ps.some((p) =>
            BigInt(held.filter((ip) => within(p.cidr, ip)).length) >= podCapacity(p.cidr)
          );
          let got: Ip[];
          try {
            got = (await allocate(store, ps, owner(pod))).map((l) => l.ip);
          } catch (err) {
            // Only a pod without addresses can hit a full pool, and then the error is clean.
            assert(isPoolFull(err), `allocate() failed with something else: ${err}`);
            assert(before === undefined && full, `pool not full but: ${(err as Error).message}`);
            continue;
          }
          assert(before !== undefined || !full, "allocated from a full pool");
          // A retried ADD gets the same addresses back, one per pool.
          if (before) assertEquals(got, before);
          assertEquals(got.length, ps.length);
          got.forEach((ip, i) => assertPodAddress(ps[i], ip));
          model.set(pod, got);
        } else {
          const freed = await release(store, owner(pod));
          assertEquals(freed.sort(), (model.get(pod) ?? []).map(textOf).sort());
          model.delete(pod);
        }
        // The store holds exactly the model: no duplicate, no leak, no one else's address.
        const held = [...model.values()].flat().map(textOf);
        assertEquals(new Set(held).size, held.length, "an address handed out twice");
        assertEquals(
          reservations(store),
          [...model].flatMap(([pod, ips]) => ips.map((ip) => `${textOf(ip)}=c${pod}`)).sort(),
        );
      }
      for (const pod of [...model.keys()]) await release(store, owner(pod));
      assertEquals(store.reservations.size, 0);
      assertEquals(await store.listAttachments(), []);
    }),
    { numRuns: 150 },
  );
});

Deno.test("allocate() hands out the first free address after the last one reserved, round-robin", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(network(4, 27, 30), network(6, 122, 126)),
      ops,
      async (cidr, steps) => {
        const store = new MemoryStore();
        const [pool] = poolsFor([cidr]);
        const holds = new Map<number, bigint>(); // the model: pod -> its address
        let cursor: bigint | undefined; // the last address handed out
        for (const { kind, pod } of steps) {
          if (kind === "del") {
            const freed = await release(store, owner(pod));
            const had = holds.get(pod);
            assertEquals(
              freed,
              had === undefined ? [] : [textOf({ family: cidr.family, value: had })],
            );
            holds.delete(pod);
            continue;
          }
          if (holds.has(pod)) continue; // a retry, covered above
          // next-fit: the first address after the cursor, wrapping, that nobody holds.
          const taken = new Set(holds.values());
          const want = podAddressesAfter(cidr, cursor).find((v) => !taken.has(v));
          let got: bigint | undefined;
          try {
            [got] = (await allocate(store, [pool], owner(pod))).map((l) => l.ip.value);
          } catch (err) {
            assert(isPoolFull(err), `allocate() failed with something else: ${err}`);
          }
          assertEquals(got, want);
          if (got === undefined) continue;
          holds.set(pod, got);
          cursor = got;
        }
      },
    ),
    { numRuns: 150 },
  );
});

/** Thrown by a {@linkcode crashingStore} at its chosen write: the process died there. */
class Crash extends Error {}

/**
 * `store` as a process sees it that is killed before its `n`-th write (index, reservation,
 * round-robin marker, release): that write and every later one never happen.
 */
function crashingStore(store: MemoryStore, n: number): Store {
  let writes = 0;
  const write = <A extends unknown[], R>(fn: (...a: A) => R) => (...a: A): R => {
    if (++writes >= n) throw new Crash(`killed before write ${n}`);
    return fn.apply(store, a);
  };
  return {
    reserve: write(store.reserve),
    release: write(store.release),
    setLastReserved: write(store.setLastReserved),
    setAttachmentIps: write(store.setAttachmentIps),
    isTaken: (ip) => store.isTaken(ip),
    list: () => store.list(),
    lastReserved: (r) => store.lastReserved(r),
    attachmentIps: (o) => store.attachmentIps(o),
    listAttachments: () => store.listAttachments(),
    owns: (ip, o) => store.owns(ip, o),
  };
}

Deno.test("allocate() killed before any of its writes is completed by a retry, and release frees all", async () => {
  await fc.assert(
    fc.asyncProperty(
      pools,
      fc.nat(20),
      fc.integer({ min: 1, max: 7 }),
      fc.boolean(),
      async (cidrs, others, killAt, interleave) => {
        const store = new MemoryStore();
        const ps = poolsFor(cidrs);
        const fill = async (pod: number) => {
          await allocate(store, ps, owner(pod)).catch((err) => {
            assert(isPoolFull(err), `allocate() failed with something else: ${err}`);
          });
        };
        for (let i = 0; i < others; i++) await fill(100 + i);
        // The killed ADD: whatever it wrote before dying stays as it was.
        const outcome = await allocate(crashingStore(store, killAt), ps, owner(1)).then(
          () => "finished",
          (err) => {
            if (err instanceof Crash || isPoolFull(err)) return String(err);
            throw err;
          },
        );
        // Meanwhile another pod may take what the killed ADD named but never reserved.
        if (interleave) await fill(200);
        const othersBefore = reservations(store).filter((r) => !r.endsWith("=c1"));
        const mineBefore = reservations(store).filter((r) => r.endsWith("=c1"));
        // The runtime retries the ADD.
        const free = (p: Pool) =>
          podCapacity(p.cidr) -
          BigInt([...store.reservations.keys()].filter((ip) => ipIn(p, ip)).length);
        const holdsIn = (p: Pool) => mineBefore.some((r) => ipIn(p, r.split("=")[0]));
        let got: Ip[] | undefined;
        try {
          got = (await allocate(store, ps, owner(1))).map((l) => l.ip);
        } catch (err) {
          assert(isPoolFull(err), `retry after "${outcome}" failed with: ${err}`);
          assert(ps.some((p) => !holdsIn(p) && free(p) === 0n), `no pool is full: ${err}`);
        }
        if (got) {
          assertEquals(got.length, ps.length);
          got.forEach((ip, i) => assertPodAddress(ps[i], ip));
          // It holds exactly what it got, kept what the killed ADD had reserved, and took
          // nothing from anyone else.
          const mine = got.map((ip) => `${textOf(ip)}=c1`).sort();
          assertEquals(reservations(store).filter((r) => r.endsWith("=c1")), mine);
          for (const r of mineBefore) assert(mine.includes(r), `${r} lost by the retry`);
          assertEquals(reservations(store).filter((r) => !r.endsWith("=c1")), othersBefore);
        }
        // DEL frees everything of the attachment, whatever state the kill left.
        await release(store, owner(1));
        assertEquals(reservations(store).filter((r) => r.endsWith("=c1")), []);
        assertEquals((await store.listAttachments()).some((o) => o.containerId === "c1"), false);
        assertEquals(reservations(store), othersBefore);
      },
    ),
    { numRuns: 200 },
  );
});

/** Whether the reservation `ip` (as the store names it) is `pool`'s: one pool per family. */
function ipIn(pool: Pool, ip: string): boolean {
  return (ip.includes(":") ? 6 : 4) === pool.cidr.family;
}
