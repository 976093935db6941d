// DiskStore against a real temp directory: host-local's layout, exclusivity, legacy records.
import { DiskStore, formatOwner, parseOwner } from "../../../lib/ipam/store.ts";
import { assertEquals } from "../../harness/assert.ts";

const pod = { containerId: "c1", ifname: "eth0", pod: "default/web-0" };

async function withStore(fn: (s: DiskStore, dir: string) => void | Promise<void>) {
  const dataDir = await Deno.makeTempDir({ prefix: "mycni-store-" });
  try {
    using store = DiskStore.open(dataDir, "net");
    await fn(store, `${dataDir}/net`);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
}

Deno.test("DiskStore.reserve() writes host-local's record and refuses a taken IP", () =>
  withStore((store, dir) => {
    assertEquals(store.reserve("10.244.1.5", pod), true);
    assertEquals(Deno.readTextFileSync(`${dir}/10.244.1.5`), "c1\r\neth0\r\ndefault/web-0");
    assertEquals(store.reserve("10.244.1.5", { containerId: "c2", ifname: "eth0" }), false);
    assertEquals(store.owns("10.244.1.5", pod), true);
    assertEquals(store.owns("10.244.1.5", { containerId: "c2", ifname: "eth0" }), false);
    // No temp files left behind.
    assertEquals([...Deno.readDirSync(dir)].filter((e) => e.name.startsWith(".tmp")).length, 0);
  }));

Deno.test("DiskStore.release() leaves another owner's address alone", () =>
  withStore((store) => {
    store.reserve("fd00::5", pod);
    store.release("fd00::5", { containerId: "other", ifname: "eth0" });
    assertEquals(store.isTaken("fd00::5"), true);
    store.release("fd00::5", pod);
    assertEquals(store.isTaken("fd00::5"), false);
  }));

Deno.test("DiskStore reads records written by host-local, old and new", () =>
  withStore((store, dir) => {
    Deno.writeTextFileSync(`${dir}/10.0.0.7`, "legacy-id");
    Deno.writeTextFileSync(`${dir}/10.0.0.8`, "new-id\r\neth1");
    Deno.writeTextFileSync(`${dir}/last_reserved_ip.0`, "10.0.0.8");
    assertEquals(store.owns("10.0.0.7", { containerId: "legacy-id", ifname: "eth0" }), true);
    assertEquals(store.owns("10.0.0.8", { containerId: "new-id", ifname: "eth0" }), false);
    assertEquals(store.lastReserved(0), "10.0.0.8");
    const list = store.list();
    assertEquals(list.map((a) => a.ip).sort(), ["10.0.0.7", "10.0.0.8"]);
  }));

Deno.test("DiskStore attachment index round-trips and lists attachments", () =>
  withStore((store) => {
    store.setAttachmentIps(pod, ["10.244.1.5", "fd00::5"]);
    assertEquals(store.attachmentIps(pod), ["10.244.1.5", "fd00::5"]);
    assertEquals(store.listAttachments(), [{ containerId: "c1", ifname: "eth0" }]);
    store.setAttachmentIps(pod, []);
    assertEquals(store.attachmentIps(pod), []);
  }));

Deno.test("formatOwner() and parseOwner() round-trip with and without a pod", () => {
  assertEquals(parseOwner(formatOwner(pod)), pod);
  assertEquals(parseOwner("id\r\neth0\n"), { containerId: "id", ifname: "eth0" });
});

Deno.test("DiskStore works in a directory host-local made (no attachments/ yet)", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "mycni-store-" });
  try {
    Deno.mkdirSync(`${dataDir}/net`);
    Deno.writeTextFileSync(`${dataDir}/net/10.0.0.9`, "hl-id\r\neth0");
    using store = DiskStore.open(dataDir, "net");
    assertEquals(store.listAttachments(), []);
    store.setAttachmentIps(pod, ["10.0.0.5"]);
    assertEquals(store.attachmentIps(pod), ["10.0.0.5"]);
    assertEquals(store.list().map((a) => a.ip).sort(), ["10.0.0.9"]);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("DiskStore.setAttachmentIps() creates a new index, replaces an old one whole", () =>
  withStore((store, dir) => {
    // A directory host-local made has no attachments/ yet.
    Deno.removeSync(`${dir}/attachments`, { recursive: true });
    store.setAttachmentIps(pod, ["10.244.1.5"]);
    assertEquals(Deno.readTextFileSync(`${dir}/attachments/c1@eth0`), "10.244.1.5\n");
    assertEquals(Deno.statSync(`${dir}/attachments/c1@eth0`).mode! & 0o777, 0o600);
    // An ADD retried after a crash rewrites it: longer, then shorter, never a mix.
    store.setAttachmentIps(pod, ["10.244.1.5", "fd00::5"]);
    assertEquals(store.attachmentIps(pod), ["10.244.1.5", "fd00::5"]);
    store.setAttachmentIps(pod, ["10.244.1.9"]);
    assertEquals(Deno.readTextFileSync(`${dir}/attachments/c1@eth0`), "10.244.1.9\n");
    assertEquals([...Deno.readDirSync(dir)].filter((e) => e.name.startsWith(".tmp")).length, 0);
  }));
