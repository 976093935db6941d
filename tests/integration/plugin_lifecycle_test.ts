// DEL, CHECK, GC and STATUS against real namespaces; concurrency, a full pool and rollback.
import { runOutput } from "../../lib/process/run.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { canRunPrivileged } from "../harness/netns.ts";
import { bare, resultIps, testNode } from "../harness/plugin.ts";

const ignore = !canRunPrivileged;
const vethsOf = (links: string[]) => links.filter((l) => /^veth[0-9a-f]{11}$/.test(l));

Deno.test({
  name:
    "DEL twice, DEL without netns and DEL after the netns is gone all succeed and free everything",
  ignore,
}, async () => {
  await using node = await testNode();
  const conf = node.conf();
  const a = await node.pod(), b = await node.pod();
  assertEquals(
    (await node.exec({ command: "ADD", containerId: "d1", netns: a.path, conf })).code,
    0,
  );
  assertEquals(
    (await node.exec({ command: "ADD", containerId: "d2", netns: b.path, conf })).code,
    0,
  );
  assertEquals((await node.allocations()).length, 4);
  // containerd: DEL with the netns, then again with CNI_NETNS="" and no prevResult.
  for (const netns of [a.path, ""]) {
    const r = await node.exec({ command: "DEL", containerId: "d1", netns, conf });
    assertEquals([r.code, r.stdout], [0, ""]);
  }
  // The netns vanished before DEL (reboot, or the runtime removed it first).
  await b[Symbol.asyncDispose]();
  const r = await node.exec({ command: "DEL", containerId: "d2", netns: b.path, conf });
  assertEquals([r.code, r.stdout], [0, ""]);
  assertEquals(await node.allocations(), []);
  assertEquals(vethsOf(await node.links()), []);
  // Unknown container: nothing to do, still success.
  assertEquals(
    (await node.exec({ command: "DEL", containerId: "never-added", netns: "", conf })).code,
    0,
  );
});

Deno.test({
  name: "CHECK passes after ADD and fails once the pod's address is removed by hand",
  ignore,
}, async () => {
  await using node = await testNode();
  const { pod, add } = await node.addedPod("c1");
  const conf = node.conf({ prevResult: add.json });
  const ok = await node.exec({ command: "CHECK", containerId: "c1", netns: pod.path, conf });
  assertEquals([ok.code, ok.stdout], [0, ""]);
  const [v4] = resultIps(add);
  await runOutput(pod.exec(["ip", "addr", "del", v4, "dev", "eth0"]));
  const bad = await node.exec({ command: "CHECK", containerId: "c1", netns: pod.path, conf });
  assertEquals(bad.code, 1);
  assertMatch(String(bad.json?.msg), new RegExp(`address ${v4} is missing on eth0`));
  const noPrev = await node.exec({
    command: "CHECK",
    containerId: "c1",
    netns: pod.path,
    conf: node.conf(),
  });
  assertMatch(String(noPrev.json?.msg), /prevResult/);
  const old = await node.exec({
    command: "CHECK",
    containerId: "c1",
    netns: pod.path,
    conf: { ...conf, cniVersion: "0.3.1" },
  });
  assertEquals(old.json?.code, 1);
});

Deno.test({
  name: "CHECK names a missing default route and a host veth taken off the bridge",
  ignore,
}, async () => {
  await using node = await testNode();
  const { pod, add } = await node.addedPod("c2");
  const conf = node.conf({ prevResult: add.json });
  const check = async () =>
    String(
      (await node.exec({ command: "CHECK", containerId: "c2", netns: pod.path, conf })).json?.msg,
    );
  await runOutput(pod.exec(["ip", "-6", "route", "del", "default"]));
  assertMatch(await check(), /route ::\/0 via fd00:250:1::1 is missing/);
  await runOutput(
    pod.exec(["ip", "-6", "route", "add", "default", "via", "fd00:250:1::1", "dev", "eth0"]),
  );
  const hostVeth = String((add.json?.interfaces as { name: string }[])[1].name);
  await runOutput(node.netns.exec(["ip", "link", "set", "dev", hostVeth, "nomaster"]));
  assertMatch(
    await check(),
    new RegExp(`host veth ${hostVeth} is not on bridge cni0 \\(master: none\\)`),
  );
});

Deno.test({
  name: "GC frees only the attachments not in cni.dev/valid-attachments, veths included",
  ignore,
}, async () => {
  await using node = await testNode({ podCIDRs: ["10.250.3.0/24"] });
  const conf = node.conf();
  const ids = ["g1", "g2", "g3"];
  const adds = [];
  for (const id of ids) {
    const pod = await node.pod();
    adds.push(await node.exec({ command: "ADD", containerId: id, netns: pod.path, conf }));
  }
  const keep = bare(resultIps(adds[1])[0]);
  // libcni also sends the list as cni.dev/attachments: accepted as the same thing.
  for (const key of ["cni.dev/valid-attachments", "cni.dev/attachments"]) {
    const r = await node.exec({
      command: "GC",
      conf: { ...conf, [key]: [{ containerID: "g2", ifname: "eth0" }] },
    });
    assertEquals([r.code, r.stdout], [0, ""]);
  }
  assertEquals(await node.allocations(), [keep]);
  assertEquals(vethsOf(await node.links()).length, 1);
  const missing = await node.exec({ command: "GC", conf });
  assertEquals(missing.json?.code, 7, "GC without a valid list must not release everything");
  assertEquals(await node.allocations(), [keep]);
});

Deno.test({
  name: "16 concurrent ADDs get 16 distinct IPs and 16 concurrent DELs free them all",
  ignore,
}, async () => {
  await using node = await testNode({ podCIDRs: ["10.250.4.0/24"] });
  const conf = node.conf();
  const pods = await Promise.all([...Array(16).keys()].map(() => node.pod()));
  const adds = await Promise.all(
    pods.map((p, i) => node.exec({ command: "ADD", containerId: `cc${i}`, netns: p.path, conf })),
  );
  for (const r of adds) assertEquals(r.code, 0, r.stdout);
  const ips = adds.map((r) => bare(resultIps(r)[0]));
  assertEquals(new Set(ips).size, 16, `duplicates in ${ips}`);
  // What each pod really has matches what its ADD returned.
  for (const [i, p] of pods.entries()) {
    const out = JSON.parse(
      (await runOutput(p.exec(["ip", "-j", "-4", "addr", "show", "dev", "eth0"]))).stdout,
    );
    assertEquals(out[0].addr_info[0].local, ips[i]);
  }
  assertEquals((await node.allocations()).length, 16);
  const dels = await Promise.all(
    pods.map((p, i) => node.exec({ command: "DEL", containerId: `cc${i}`, netns: p.path, conf })),
  );
  for (const r of dels) assertEquals(r.code, 0, r.stdout);
  assertEquals(await node.allocations(), []);
  assertEquals(vethsOf(await node.links()), []);
});

Deno.test({
  name: "A full /29 pool gives a clean error, changes nothing, and STATUS reports 50",
  ignore,
}, async () => {
  await using node = await testNode({ podCIDRs: ["10.250.5.0/29"] });
  const conf = node.conf();
  // /29: .1 is the gateway, .7 broadcast: .2-.6 = 5 pods.
  for (let i = 0; i < 5; i++) {
    const pod = await node.pod();
    assertEquals(
      (await node.exec({ command: "ADD", containerId: `f${i}`, netns: pod.path, conf })).code,
      0,
    );
  }
  assertEquals(await node.allocations(), [
    "10.250.5.2",
    "10.250.5.3",
    "10.250.5.4",
    "10.250.5.5",
    "10.250.5.6",
  ]);
  const status = await node.exec({ command: "STATUS", conf });
  assertEquals(status.json?.code, 50);
  const links = await node.links();
  const pod = await node.pod();
  const r = await node.exec({ command: "ADD", containerId: "f-extra", netns: pod.path, conf });
  assertEquals(r.code, 1);
  assertEquals(r.json?.code, 11);
  assertMatch(String(r.json?.msg), /No IP addresses available in 10\.250\.5\.0\/29/);
  assertEquals(await node.links(), links);
  assertEquals((await runOutput(pod.exec(["ip", "-j", "link", "show", "eth0"]))).code !== 0, true);
  assertEquals((await node.exec({ command: "DEL", containerId: "f0", netns: "", conf })).code, 0);
  assertEquals((await node.exec({ command: "STATUS", conf })).code, 0);
});

Deno.test({
  name: "ADD that fails half-way (eth0 already in the pod) rolls back: no veth, no allocation",
  ignore,
}, async () => {
  await using node = await testNode();
  const pod = await node.pod();
  await runOutput(
    pod.exec(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0"]),
  );
  const links = await node.links();
  const r = await node.exec({
    command: "ADD",
    containerId: "rb1",
    netns: pod.path,
    conf: node.conf(),
  });
  assertEquals(r.code, 1);
  assertMatch(String(r.json?.msg), /eth0 already exists/);
  assertEquals(await node.allocations(), []);
  // The node's bridge is made before the veth and stays, as the reference bridge's does: it is
  // the node's, not the pod's. Nothing of the pod's is left.
  const bridge = String(node.conf().bridge ?? "cni0");
  assertEquals((await node.links()).filter((l) => l !== bridge), links);
  // The pod's own eth0, which made ADD fail, is left alone.
  const own = await runOutput(pod.exec(["ip", "-o", "link", "show", "eth0"]));
  assertMatch(own.stdout, /eth0@other0/);
});

Deno.test({
  name: "ADD that fails after the veth exists (a second default route) removes the veth too",
  ignore,
}, async () => {
  await using node = await testNode();
  const { pod } = await node.addedPod("rb2");
  const links = await node.links();
  const podLinks = await runOutput(pod.exec(["ip", "-o", "link", "show"]));
  // A second interface of the same network in the same pod: its default route already exists.
  const second = await node.exec({
    command: "ADD",
    containerId: "rb2",
    ifname: "net1",
    netns: pod.path,
    conf: node.conf(),
  });
  assertEquals(second.code, 1);
  assertMatch(String(second.json?.msg), /ip route add \S+ via \S+ dev net1 .*File exists/);
  assertEquals(await node.links(), links);
  assertEquals((await runOutput(pod.exec(["ip", "-o", "link", "show"]))).stdout, podLinks.stdout);
  assertEquals((await node.allocations()).length, 2, "only the first interface's two addresses");
});

Deno.test({
  name: "Every invocation logs one JSON line to logFile and nothing but the protocol to stdout",
  ignore,
}, async () => {
  await using node = await testNode();
  const pod = await node.pod();
  const conf = node.conf();
  const args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0";
  const add = await node.exec({ command: "ADD", containerId: "log1", netns: pod.path, conf, args });
  // The IPAM record names the pod beside host-local's "<id>\r\n<ifname>".
  const rec = await Deno.readTextFile(`${node.dataDir}/testnet/${bare(resultIps(add)[0])}`);
  assertEquals(rec, "log1\r\neth0\r\ndefault/web-0");
  await node.exec({ command: "DEL", containerId: "log1", netns: pod.path, conf, args });
  await node.exec({ command: "ADD", containerId: "log1", netns: "/nonexistent", conf });
  const lines = (await Deno.readTextFile(node.logFile)).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assertEquals(lines.map((l) => [l.verb, l.level]), [["ADD", "info"], ["DEL", "info"], [
    "ADD",
    "error",
  ]]);
  assertEquals(lines[0].pod, "default/web-0");
  assertEquals(lines[0].ips, resultIps(add));
  assert(typeof lines[0].durationMs === "number");
  assertMatch(lines[2].error, /CNI_NETNS/);
});

Deno.test(
  { name: "VERSION, usage and STATUS answer without touching the node", ignore },
  async () => {
    await using node = await testNode();
    const v = await node.exec({
      command: "VERSION",
      conf: { cniVersion: "1.0.0" },
      env: { CNI_COMMAND: "VERSION", CNI_NETNS: "dummy", CNI_PATH: "dummy", CNI_IFNAME: "dummy" },
    });
    assertEquals(v.json, {
      cniVersion: "1.0.0",
      supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    });
    const usage = await node.exec({ command: "", conf: "", env: {} });
    assertEquals([usage.code, usage.stdout], [0, ""]);
    assertMatch(usage.stderr, /CNI mycni plugin/);
    const s = await node.exec({ command: "STATUS", conf: node.conf() });
    assertEquals([s.code, s.stdout], [0, ""]);
    assertEquals(await node.links(), ["lo"]);
  },
);

Deno.test(
  {
    name: "ADD, CHECK, DEL and STATUS need nothing on PATH; ipMasq's STATUS needs iptables",
    ignore,
  },
  async () => {
    await using node = await testNode();
    const pod = await node.pod();
    const empty = await Deno.makeTempDir();
    try {
      // The runtime's env with an empty PATH: the plugin may exec nothing.
      const call = (command: string, conf: Record<string, unknown>) =>
        node.exec({
          command,
          conf,
          env: {
            CNI_COMMAND: command,
            CNI_CONTAINERID: "nopath1",
            CNI_NETNS: pod.path,
            CNI_IFNAME: "eth0",
            CNI_PATH: "/usr/lib/cni",
            PATH: empty,
          },
        });
      const add = await call("ADD", node.conf());
      assertEquals(add.code, 0, add.stdout);
      const check = await call("CHECK", node.conf({ prevResult: add.json }));
      assertEquals([check.code, check.stdout], [0, ""]);
      assertEquals((await call("STATUS", node.conf())).code, 0);
      assertEquals((await call("DEL", node.conf())).code, 0);
      assertEquals(await node.allocations(), []);
      const masq = await call("STATUS", node.conf({ ipMasq: true }));
      assertEquals(masq.json?.code, 50);
      assertMatch(
        String(masq.json?.msg),
        /Missing on this node: iptables-restore, iptables-save, ip6tables-restore, ip6tables-save/,
      );
    } finally {
      await Deno.remove(empty);
    }
  },
);
