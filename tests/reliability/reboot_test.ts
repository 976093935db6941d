// Node reboot: the IPAM state dir survives while every netns, veth and the bridge vanish (the
// node and pod namespaces are deleted, a new node namespace gets the same dataDir). GC with the
// runtime's valid attachments after the reboot, then STATUS, must give back a clean pool.
import { runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals } from "../harness/assert.ts";
import { canRunPrivileged, ping, type TempNetns, tempNetns } from "../harness/netns.ts";
import { bare, execPlugin, resultIps } from "../harness/plugin.ts";

const vethsOf = (links: string[]) => links.filter((l) => /^veth[0-9a-f]{11}$/.test(l));
// /28: .1 is the gateway, .15 broadcast: 13 pods fill it, so STATUS can say "full" (50).
const POOL = "10.250.9.0/28";
const CAPACITY = 13;

async function links(node: TempNetns): Promise<string[]> {
  const out = await runOutput(node.exec(["ip", "-j", "link", "show"]));
  return (JSON.parse(out.stdout || "[]") as { ifname: string }[]).map((l) => l.ifname);
}

function allocations(dataDir: string): string[] {
  return [...Deno.readDirSync(`${dataDir}/testnet`)].map((e) => e.name)
    .filter((n) => /^[0-9a-f.:]+$/.test(n) && /[.:]/.test(n)).sort();
}

for (const kept of [0, 3]) {
  Deno.test({
    name: `GC with ${kept} valid attachments and STATUS bring a rebooted node back to a clean pool`,
    ignore: !canRunPrivileged,
  }, async () => {
    const dir = await Deno.makeTempDir({ prefix: "mycni-reboot-" });
    const namespaces: TempNetns[] = [];
    const ns = async (prefix: string) => {
      const n = await tempNetns(prefix);
      namespaces.push(n);
      return n;
    };
    try {
      const conf = {
        cniVersion: "1.1.0",
        name: "testnet",
        type: "mycni",
        podCIDRs: [POOL, "fd00:250:9::/120"],
        dataDir: `${dir}/ipam`,
        logFile: `${dir}/mycni.log`,
        mtu: 1500,
      };
      // Before the reboot: a full node.
      let node = await ns("mcrn");
      const before: string[] = [];
      for (let i = 0; i < CAPACITY; i++) {
        const pod = await ns("mcrp");
        const r = await execPlugin(node.path, {
          command: "ADD",
          containerId: `boot1-${i}`,
          netns: pod.path,
          conf,
        });
        assertEquals(r.code, 0, r.stdout);
        before.push(...resultIps(r).map(bare));
      }
      assertEquals((await execPlugin(node.path, { command: "STATUS", conf })).json?.code, 50);

      // The reboot: every namespace and link is gone, the state dir is not.
      for (const n of namespaces.splice(0)) await n[Symbol.asyncDispose]();
      node = await ns("mcrn");
      assertEquals(allocations(conf.dataDir), before.sort());
      assertEquals(await links(node), ["lo"]);
      // Still full by the books: STATUS says so, and a new pod gets a clean error, not a crash.
      assertEquals((await execPlugin(node.path, { command: "STATUS", conf })).json?.code, 50);
      const early = await ns("mcrp");
      const refused = await execPlugin(node.path, {
        command: "ADD",
        containerId: "boot2-early",
        netns: early.path,
        conf,
      });
      assertEquals(refused.json?.code, 11, refused.stdout);

      // The runtime's GC after the reboot: only the sandboxes it still knows about are valid.
      const valid = Array.from({ length: kept }, (_, i) => ({
        containerID: `boot1-${i}`,
        ifname: "eth0",
      }));
      const gc = await execPlugin(node.path, {
        command: "GC",
        conf: { ...conf, "cni.dev/valid-attachments": valid },
      });
      assertEquals([gc.code, gc.stdout], [0, ""]);
      assertEquals(allocations(conf.dataDir).length, kept * 2);
      const status = await execPlugin(node.path, { command: "STATUS", conf });
      assertEquals([status.code, status.stdout], [0, ""]);

      // The pool is whole again: every free address can be handed out, and the bridge works.
      const fresh: string[] = [];
      for (let i = 0; i < CAPACITY - kept; i++) {
        const pod = await ns("mcrp");
        const r = await execPlugin(node.path, {
          command: "ADD",
          containerId: `boot2-${i}`,
          netns: pod.path,
          conf,
        });
        assertEquals(r.code, 0, r.stdout);
        fresh.push(...resultIps(r).map(bare));
        if (i === 0) {
          assert(await ping(pod, "10.250.9.1"), "new pod cannot reach the IPv4 gateway");
          assert(await ping(pod, "fd00:250:9::1"), "new pod cannot reach the IPv6 gateway");
        }
      }
      assertEquals(new Set(fresh).size, fresh.length, "duplicate after the reboot");
      assertEquals(allocations(conf.dataDir).length, CAPACITY * 2);
      // The kept attachments' netns died in the reboot: their DEL still frees them.
      for (const { containerID } of valid) {
        const r = await execPlugin(node.path, {
          command: "DEL",
          containerId: containerID,
          netns: "/run/netns/mcr-gone-in-reboot",
          conf,
        });
        assertEquals([r.code, r.stdout], [0, ""]);
      }
      for (let i = 0; i < CAPACITY - kept; i++) {
        const r = await execPlugin(node.path, {
          command: "DEL",
          containerId: `boot2-${i}`,
          netns: "",
          conf,
        });
        assertEquals(r.code, 0, r.stdout);
      }
      const leaks = allocations(conf.dataDir).length + vethsOf(await links(node)).length +
        [...Deno.readDirSync(`${conf.dataDir}/testnet/attachments`)].length;
      console.log(
        `reliability reboot (${kept} kept): ${CAPACITY} pods before, state dir survived with ` +
          `${before.length} allocations, GC freed ${before.length - kept * 2}, ` +
          `${CAPACITY - kept} new ADDs filled the pool again, leaks ${leaks}`,
      );
      assertEquals(leaks, 0);
    } finally {
      for (const n of namespaces) await n[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  });
}
