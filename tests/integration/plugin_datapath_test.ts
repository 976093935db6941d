// The plugin's datapath, exec'd like a runtime does, in real namespaces: addresses really
// configured, pings that really cross, results in every supported version.
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { runOutput } from "../../lib/process/run.ts";
import { SUPPORTED_VERSIONS } from "../../lib/cni/version.ts";
import { canRunPrivileged, ping } from "../harness/netns.ts";
import { bare, resultIps, testNode } from "../harness/plugin.ts";

const ignore = !canRunPrivileged;

Deno.test({
  name: "ADD wires two dual-stack pods that reach each other, the gateway and the node",
  ignore,
}, async () => {
  await using node = await testNode();
  const [a, b] = [await node.pod(), await node.pod()];
  const ra = await node.exec({
    command: "ADD",
    containerId: "pod-a",
    netns: a.path,
    conf: node.conf(),
  });
  const rb = await node.exec({
    command: "ADD",
    containerId: "pod-b",
    netns: b.path,
    conf: node.conf(),
  });
  assertEquals(ra.code, 0, ra.stdout);
  assertEquals(rb.code, 0, rb.stdout);
  const [a4, a6] = resultIps(ra).map(bare);
  const [b4, b6] = resultIps(rb).map(bare);
  assertMatch(a4, /^10\.250\.1\./);
  assertMatch(b6, /^fd00:250:1::/);
  // What the result says is what the kernel has.
  const addrs = JSON.parse(
    (await runOutput(a.exec(["ip", "-j", "addr", "show", "dev", "eth0"]))).stdout,
  );
  const configured = addrs[0].addr_info.map((x: { local: string }) => x.local);
  assert(configured.includes(a4) && configured.includes(a6), `eth0 has ${configured}`);
  // No tentative IPv6 address at return: DAD is off for the pod.
  assert(!JSON.stringify(addrs).includes("tentative"), "IPv6 address still tentative after ADD");
  for (
    const [from, to] of [[a, b4], [a, b6], [b, a4], [b, a6], [a, "10.250.1.1"], [
      a,
      "fd00:250:1::1",
    ]] as const
  ) {
    assert(await ping(from, to), `${from.name} -> ${to}`);
  }
  assert(await ping(node.netns, a4), "node -> pod IPv4");
  assert(await ping(node.netns, b6), "node -> pod IPv6");
});

Deno.test({
  name: "ADD configures the host side: bridge with gateways, hairpin, MTU, deterministic veth",
  ignore,
}, async () => {
  await using node = await testNode();
  const pod = await node.pod();
  const r = await node.exec({
    command: "ADD",
    containerId: "mtu-pod",
    netns: pod.path,
    conf: node.conf({ mtu: 1400 }),
  });
  assertEquals(r.code, 0, r.stdout);
  const ifaces = r.json!.interfaces as {
    name: string;
    mac: string;
    mtu?: number;
    sandbox?: string;
  }[];
  assertEquals(ifaces.map((i) => i.name)[0], "cni0");
  assertMatch(ifaces[1].name, /^veth[0-9a-f]{11}$/);
  assertEquals(ifaces[2], { name: "eth0", mac: ifaces[2].mac, mtu: 1400, sandbox: pod.path });
  const host = JSON.parse(
    (await runOutput(node.netns.exec(["ip", "-j", "-d", "link", "show", "dev", ifaces[1].name])))
      .stdout,
  )[0];
  assertEquals(host.master, "cni0");
  assertEquals(host.mtu, 1400);
  assertEquals(host.linkinfo.info_slave_data.hairpin, true);
  assertEquals(host.address, ifaces[1].mac);
  const bridge = JSON.parse(
    (await runOutput(node.netns.exec(["ip", "-j", "addr", "show", "dev", "cni0"]))).stdout,
  )[0];
  assertEquals(bridge.address, ifaces[0].mac);
  const gws = bridge.addr_info.map((x: { local: string; prefixlen: number }) =>
    `${x.local}/${x.prefixlen}`
  );
  assert(gws.includes("10.250.1.1/24") && gws.includes("fd00:250:1::1/64"), `bridge has ${gws}`);
  const podLink =
    JSON.parse((await runOutput(pod.exec(["ip", "-j", "link", "show", "dev", "eth0"]))).stdout)[0];
  assertEquals(podLink.mtu, 1400);
  assertEquals(podLink.address, ifaces[2].mac);
});

for (const version of SUPPORTED_VERSIONS) {
  Deno.test({
    name: `ADD answers in cniVersion ${version} with that version's result shape`,
    ignore,
  }, async () => {
    await using node = await testNode();
    const pod = await node.pod();
    const r = await node.exec({
      command: "ADD",
      containerId: `v${version}`,
      netns: pod.path,
      conf: node.conf({ cniVersion: version }),
    });
    assertEquals(r.code, 0, r.stdout);
    const json = r.json!;
    assertEquals(json.cniVersion, version);
    const ips = json.ips as Record<string, unknown>[];
    assertEquals(ips.length, 2);
    const pre1 = version.startsWith("0.");
    for (const ip of ips) {
      assertEquals(ip.interface, 2);
      assertMatch(String(ip.gateway), /^(10\.250\.1\.1|fd00:250:1::1)$/);
      assertEquals("version" in ip, pre1, `ips[].version in ${version}`);
      if (pre1) assertEquals(ip.version, String(ip.address).includes(":") ? "6" : "4");
    }
    const ifaces = json.interfaces as Record<string, unknown>[];
    assertEquals("mtu" in ifaces[2], version === "1.1.0", `interfaces[].mtu in ${version}`);
    assertEquals((json.routes as unknown[]).length, 2);
    const del = await node.exec({
      command: "DEL",
      containerId: `v${version}`,
      netns: pod.path,
      conf: node.conf({ cniVersion: version }),
    });
    assertEquals(del.code, 0, del.stdout);
    assertEquals(del.stdout, "");
  });
}

Deno.test({
  name: "ADD with delegated host-local IPAM wires the pod and DEL releases the host-local file",
  ignore,
}, async () => {
  await using node = await testNode();
  const pod = await node.pod(), peer = await node.pod();
  const ipam = {
    type: "host-local",
    ranges: [[{ subnet: "10.251.0.0/24" }]],
    dataDir: node.dataDir,
  };
  // Debian's host-local (plugins 1.1.1) speaks up to 1.0.0; the config goes to it unchanged.
  const conf = node.conf({ cniVersion: "1.0.0", podCIDRs: undefined, ipam });
  const r = await node.exec({ command: "ADD", containerId: "hl-1", netns: pod.path, conf });
  assertEquals(r.code, 0, r.stdout);
  assertEquals(resultIps(r), ["10.251.0.2/24"]);
  const p = await node.exec({ command: "ADD", containerId: "hl-2", netns: peer.path, conf });
  assertEquals(p.code, 0, p.stdout);
  assert(await ping(pod, "10.251.0.1"), "pod -> gateway");
  assert(await ping(pod, bare(resultIps(p)[0])), "pod -> pod");
  assertEquals(await node.allocations(), ["10.251.0.2", "10.251.0.3"]);
  const d = await node.exec({ command: "DEL", containerId: "hl-1", netns: pod.path, conf });
  assertEquals(d.code, 0, d.stdout);
  assertEquals(await node.allocations(), ["10.251.0.3"]);
  const check = await node.exec({
    command: "CHECK",
    containerId: "hl-2",
    netns: peer.path,
    conf: { ...conf, prevResult: p.json },
  });
  assertEquals(check.code, 0, check.stdout);
});

Deno.test({
  name: "ADD with ipMasq adds a masquerade chain that DEL removes even without a netns",
  ignore,
}, async () => {
  await using node = await testNode({ podCIDRs: ["10.250.2.0/24"] });
  const pod = await node.pod();
  const conf = node.conf({ ipMasq: true });
  const r = await node.exec({ command: "ADD", containerId: "masq-1", netns: pod.path, conf });
  assertEquals(r.code, 0, r.stdout);
  const nat = async () => (await runOutput(node.netns.exec(["iptables-save", "-t", "nat"]))).stdout;
  const rules = await nat();
  assertMatch(rules, /-A POSTROUTING -s 10\.250\.2\.2\/32 .*-j MYCNI-[0-9a-f]{20}/);
  assertMatch(rules, /-A MYCNI-[0-9a-f]{20} ! -d 224\.0\.0\.0\/4 -j MASQUERADE/);
  const check = () =>
    node.exec({
      command: "CHECK",
      containerId: "masq-1",
      netns: pod.path,
      conf: { ...conf, prevResult: r.json },
    });
  assertEquals((await check()).code, 0);
  // CHECK notices the masquerade rule going missing (an untracked resource, per the spec).
  const chain = /-j (MYCNI-[0-9a-f]{20})/.exec(rules)![1];
  await runOutput(
    node.netns.exec([
      "iptables",
      "-t",
      "nat",
      "-D",
      "POSTROUTING",
      "-s",
      "10.250.2.2/32",
      "-m",
      "comment",
      "--comment",
      "mycni testnet masq-1",
      "-j",
      chain,
    ]),
  );
  assertMatch(String((await check()).json?.msg), /masquerade chain/);
  const d = await node.exec({ command: "DEL", containerId: "masq-1", netns: "", conf });
  assertEquals(d.code, 0, d.stdout);
  assert(!(await nat()).includes("MYCNI-"), "masquerade chain left behind");
});
