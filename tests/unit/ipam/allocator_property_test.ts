// Property-based tests of the allocator (lib/ipam/allocator.ts) over an in-memory Store: random
// sequences of ADD (allocate), retried ADD and DEL (release) on random /16-/30 IPv4 and
// /64-/120 IPv6 pools, single- and dual-stack, checked against a model after every step.
// deno-lint-ignore-file no-import-prefix -- test-only npm package, pinned where it is used
import fc from "npm:fast-check@4.10.2";
import { allocate, heldBy, type Pool, poolOf, release } from "../../../lib/ipam/allocator.ts";
import {
  type Cidr,
  cidrContains,
  type Family,
  familyBits,
  formatCidr,
  formatIp,
  hostRange,
  lastAddress,
  parseIp,
} from "../../../lib/ip/cidr.ts";
import { CniError, ErrorCode } from "../../../lib/cni/errors.ts";
import type { Owner } from "../../../lib/ipam/store.ts";
import { assert, assertEquals } from "../../harness/assert.ts";
import { MemoryStore } from "../../harness/memory_store.ts";

/** A pod network of `family` with a prefix in [min, max], at a random place. */
function network(family: Family, min: number, max: number): fc.Arbitrary<Cidr> {
  const bits = familyBits(family);
  return fc.tuple(fc.bigInt({ min: 0n, max: (1n << BigInt(bits)) - 1n }), fc.integer({ min, max }))
    .map(([value, prefix]) => {
      const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - prefix)) - 1n);
      return { family, network: value & mask, prefix };
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
/** Addresses a pod may get from the pool: the host range without the gateway. */
const capacity = (p: Pool) => hostRange(p.cidr).last - hostRange(p.cidr).first;

function assertHandable(pool: Pool, text: string): void {
  const ip = parseIp(text);
  const where = `${text} from ${formatCidr(pool.cidr)}`;
  assert(cidrContains(pool.cidr, ip), `${where}: outside the pool`);
  assert(ip.value !== pool.cidr.network, `${where}: the network address`);
  assert(ip.value !== pool.gateway.value, `${where}: the gateway`);
  if (pool.cidr.family === 4) assert(ip.value !== lastAddress(pool.cidr), `${where}: broadcast`);
}

Deno.test("allocate() and release() keep every address unique, handable and exactly accounted", async () => {
  await fc.assert(
    fc.asyncProperty(pools, ops, async (cidrs, steps) => {
      const store = new MemoryStore();
      const ps = cidrs.map(poolOf);
      const model = new Map<number, string[]>(); // pod -> what it holds
      for (const { kind, pod } of steps) {
        if (kind === "add") {
          const before = model.get(pod);
          const used = ps.map((p) =>
            [...model.values()].flat().filter((ip) => cidrContains(p.cidr, parseIp(ip))).length
          );
          const full = ps.some((p, i) => BigInt(used[i]) >= capacity(p));
          let got: string[];
          try {
            got = (await allocate(store, ps, owner(pod))).map((l) => formatIp(l.ip));
          } catch (err) {
            // Only a pod without addresses can hit a full pool, and then the error is clean.
            assert(err instanceof CniError && err.code === ErrorCode.TryAgainLater, String(err));
            assert(before === undefined && full, `pool not full but: ${(err as Error).message}`);
            continue;
          }
          assert(before !== undefined || !full, "allocated from a full pool");
          // A retried ADD gets the same addresses back, one per pool.
          if (before) assertEquals(got, before);
          assertEquals(got.length, ps.length);
          got.forEach((ip, i) => assertHandable(ps[i], ip));
          model.set(pod, got);
        } else {
          const freed = await release(store, owner(pod));
          assertEquals(freed.sort(), [...model.get(pod) ?? []].sort());
          model.delete(pod);
          assertEquals(await heldBy(store, owner(pod)), []);
        }
        // The store holds exactly the model: no duplicate, no leak, no one else's address.
        const held = [...model.values()].flat();
        assertEquals(new Set(held).size, held.length, "an address handed out twice");
        assertEquals(
          [...store.reservations].map(([ip, o]) => `${ip}=${o.containerId}`).sort(),
          [...model].flatMap(([pod, ips]) => ips.map((ip) => `${ip}=c${pod}`)).sort(),
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
        const pool = poolOf(cidr);
        const { first, last } = hostRange(cidr);
        let cursor: bigint | undefined; // the last address handed out
        const freedSinceWrap = new Set<bigint>();
        for (const { kind, pod } of steps) {
          if (kind === "del") {
            for (const ip of await release(store, owner(pod))) {
              freedSinceWrap.add(
                parseIp(ip).value,
              );
            }
            continue;
          }
          if ((await heldBy(store, owner(pod))).length) continue; // a retry, covered above
          // The model: walk the host range from after the cursor, wrapping, skipping the gateway.
          let want: bigint | undefined;
          const start = cursor === undefined || cursor === last ? first : cursor + 1n;
          for (let i = 0n; i <= last - first; i++) {
            const v = first + ((start - first + i) % (last - first + 1n));
            if (v === pool.gateway.value) continue;
            if (!store.reservations.has(formatIp({ family: cidr.family, value: v }))) {
              want = v;
              break;
            }
          }
          const got = await allocate(store, [pool], owner(pod)).then(
            ([l]) => l.ip.value,
            () => undefined,
          );
          assertEquals(got, want);
          if (got === undefined) continue;
          // Before the cursor wraps, nothing freed comes back: a just-freed address is not
          // handed straight to the next pod while untouched addresses remain ahead.
          if (cursor !== undefined && got > cursor) {
            assert(
              !freedSinceWrap.has(got),
              "reused early",
            );
          } else freedSinceWrap.clear();
          cursor = got;
        }
      },
    ),
    { numRuns: 150 },
  );
});

Deno.test("allocate() after a crash between the index and the reservation completes the lease", async () => {
  await fc.assert(
    fc.asyncProperty(pools, fc.nat(20), async (cidrs, others) => {
      const store = new MemoryStore();
      const ps = cidrs.map(poolOf);
      for (let i = 0; i < others; i++) {
        await allocate(store, ps, owner(100 + i)).catch(() => {});
      }
      // A killed ADD left the index naming an address it never reserved.
      const ghost = formatIp({ family: ps[0].cidr.family, value: hostRange(ps[0].cidr).last });
      if (await store.isTaken(ghost)) return;
      await store.setAttachmentIps(owner(1), [ghost]);
      const got = await allocate(store, ps, owner(1)).then(
        (l) => l.map((x) => formatIp(x.ip)),
        () => [],
      );
      got.forEach((ip, i) => assertHandable(ps[i], ip));
      await release(store, owner(1));
      assert(![...store.reservations.values()].some((o) => o.containerId === "c1"), "leak");
      assertEquals((await store.listAttachments()).some((o) => o.containerId === "c1"), false);
    }),
    { numRuns: 100 },
  );
});
