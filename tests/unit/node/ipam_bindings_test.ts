import { DiskStore } from "../../../lib/ipam/store.ts";
import { readIpamBindings } from "../../../lib/node/ipam_bindings.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("readIpamBindings() rebuilds the bindings the plugin's IPAM store records", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mycni-ipamb-" });
  try {
    assertEquals(readIpamBindings(dir, "mycni").size, 0);
    assertEquals(
      await Deno.stat(`${dir}/mycni`).then(() => "made", () => "absent"),
      "absent",
      "reading a network with no state creates nothing",
    );
    {
      using store = DiskStore.open(dir, "mycni");
      const owner = { containerId: "c1", ifname: "eth0", pod: "x/web-0" };
      store.reserve("10.244.1.5", owner);
      store.reserve("fd00:10:244:1::5", owner);
      store.reserve("10.244.1.6", { containerId: "c2", ifname: "eth0" });
      store.setLastReserved(0, "10.244.1.6");
    }
    assertEquals([...readIpamBindings(dir, "mycni").values()], [
      {
        containerId: "c1",
        ifname: "eth0",
        pod: { namespace: "x", name: "web-0" },
        ips: ["10.244.1.5", "fd00:10:244:1::5"],
      },
      { containerId: "c2", ifname: "eth0", ips: ["10.244.1.6"] },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
