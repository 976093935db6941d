// Real CNI clients drive the plugin (issue 5): containerd's CRI plugin (the kubelet path), `ctr run
// --cni`, podman with its CNI backend and a libcni driver (CHECK through a chain), each on two
// simulated dual-stack nodes, first with the reference bridge + host-local, then with mycni, and
// the two compared side by side. Runtimes run inside node namespaces made here;
// notes/real-runtimes.md has the recipes.
import {
  deepStrictEqual as assertEquals,
  match as assertMatch,
  ok as assert,
} from "node:assert/strict";
import { cidrContains, parseCidr, parseIp } from "../../lib/ip/cidr.ts";
import { run, runOutput } from "../../lib/process/run.ts";
import { canRunPrivileged, tempNetns, uniqueName } from "../harness/netns.ts";
import {
  type Cluster,
  createCluster,
  mycniConflist,
  NETWORK,
  type PluginKind,
  referenceConflist,
  type SimNode,
  writeConflist,
} from "../harness/interop/cluster.ts";
import {
  type ContainerdNode,
  startContainerd,
  waitFor,
  waitNetworkReady,
} from "../harness/interop/containerd.ts";
import type { CriMessage } from "../harness/interop/cri_client.ts";
import { ctrWithCni } from "../harness/interop/ctr.ts";
import { buildCnitool, cnitool } from "../harness/interop/cnitool.ts";
import {
  hostLeftovers,
  type HostResidue,
  inspectHost,
  killCgroup,
  listAllocations,
  listRules,
  listVeths,
  mountsUnder,
  newRules,
  removeHostLeftovers,
  snapshotHost,
  waitCgroupEmpty,
} from "../harness/interop/host_state.ts";
import { buildBusyboxImage, type OciImage, POD_PAGE } from "../harness/interop/oci_image.ts";
import { type Podman, setupPodman } from "../harness/interop/podman.ts";
import {
  type CniCall,
  formatCalls,
  installShims,
  logSize,
  readCalls,
  referencePlugins,
} from "../harness/interop/shim.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const PLUGIN = `${ROOT}bin/mycni`;
const AGENT = `${ROOT}bin/mycni-init`;
const HOST_PORT = 18080;
const HTTP_GET = "GET / HTTP/1.0\r\n\r\n";
const KINDS: readonly PluginKind[] = ["reference", "mycni"];
/** The plugin each kind's pods go through first (the one whose DELs we count). */
const MAIN_PLUGIN: Record<PluginKind, string> = { reference: "bridge", mycni: "mycni" };
/** The containerd namespace `ctr run --cni` uses: its CNI_CONTAINERID is `mci-<id>`. */
const CTR_NAMESPACE = "mci";

/** What one kind did, printed side by side at the end. */
interface Report {
  timings: Record<string, number[]>;
  notes: string[];
}

/** Everything a scenario needs for one kind. */
interface Ctx {
  readonly kind: PluginKind;
  readonly tmp: string;
  readonly cluster: Cluster;
  readonly containerds: readonly ContainerdNode[];
  readonly podman: Podman;
  readonly cnitoolPath: string;
  readonly shimDir: string;
  readonly shimLog: string;
  readonly images: { pause: OciImage; busybox: OciImage };
  readonly cgroupParent: string;
  readonly report: Report;
}

async function timed<T>(ctx: Ctx, op: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  (ctx.report.timings[op] ??= []).push(performance.now() - t0);
  return out;
}

function note(ctx: Ctx, line: string) {
  ctx.report.notes.push(line);
  console.log(`  [${ctx.kind}] ${line}`);
}

function inCidr(ip: string, cidr: string): boolean {
  return cidrContains(parseCidr(cidr), parseIp(ip));
}

/** Exactly one of `ips` in each of the node's podCIDRs (one per family), and nothing else. */
function assertPodIps(what: string, ips: readonly string[], node: SimNode) {
  const perCidr = node.spec.podCIDRs.map((c) => ips.filter((ip) => inCidr(ip, c)).length);
  assert(
    ips.length === node.spec.podCIDRs.length && perCidr.every((n) => n === 1),
    `${what} IPs [${ips}] do not match ${node.spec.name}'s podCIDRs [${node.spec.podCIDRs}]`,
  );
}

/** What a node holds for pods: allocations, veths and rules added since `baseRules`. */
async function nodeResidue(node: SimNode, baseRules: readonly string[]) {
  return {
    allocations: await listAllocations(node.dataDir),
    veths: await listVeths(node.ns.path),
    rules: newRules(baseRules, await listRules(node.ns.path)),
  };
}

async function assertClean(ctx: Ctx, what: string, node: SimNode, baseRules: readonly string[]) {
  const left = await nodeResidue(node, baseRules);
  note(ctx, `${what} on ${node.spec.name}: leftovers ${JSON.stringify(left)}`);
  assertEquals(
    left,
    { allocations: [], veths: [], rules: [] },
    `${what} left state on ${node.spec.name}`,
  );
}

function callsFor(calls: readonly CniCall[], ids: readonly string[]): CniCall[] {
  return calls.filter((c) => ids.includes(c.containerId));
}

function sandboxConfig(ctx: Ctx, name: string, ports: readonly number[]): CriMessage {
  return {
    metadata: { name, uid: `${name}-uid`, namespace: "mci", attempt: 0 },
    hostname: name,
    log_directory: `${ctx.tmp}/${ctx.kind}/podlogs/${name}`,
    port_mappings: ports.map((p) => ({ protocol: "TCP", container_port: 80, host_port: p })),
    linux: { cgroup_parent: ctx.cgroupParent },
  };
}

/** RunPodSandbox + a busybox httpd container; returns ids, the pod IPs and its netns path. */
async function startPod(ctx: Ctx, i: number, ports: readonly number[]) {
  const { cri } = ctx.containerds[i];
  const config = sandboxConfig(ctx, `${ctx.kind}-pod${i}`, ports);
  const { pod_sandbox_id: id } = await timed(
    ctx,
    "RunPodSandbox",
    () => cri.call("RunPodSandbox", { config }),
  );
  const status = await cri.call("PodSandboxStatus", { pod_sandbox_id: id, verbose: true });
  const info = JSON.parse(status.info?.info ?? "{}");
  const netns = (info.runtimeSpec?.linux?.namespaces ?? [])
    .find((n: { type: string }) => n.type === "network")?.path ?? "";
  const { container_id: cid } = await cri.call("CreateContainer", {
    pod_sandbox_id: id,
    config: {
      metadata: { name: "web", attempt: 0 },
      image: { image: ctx.images.busybox.ref },
      command: ["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
      log_path: "web.log",
    },
    sandbox_config: config,
  });
  await cri.call("StartContainer", { container_id: cid });
  // CRI: `ip` is the primary (containerd picks IPv4 first), other families in additional_ips.
  const network = status.status.network ?? {};
  const ips: string[] = [network.ip, ...(network.additional_ips ?? []).map((a: CriMessage) => a.ip)]
    .filter((ip) => ip);
  return { id, cid, ip: network.ip as string, ips, netns };
}

async function execIn(ctx: Ctx, i: number, cid: string, cmd: string[]) {
  const res = await ctx.containerds[i].cri.call("ExecSync", {
    container_id: cid,
    cmd,
    timeout: 10,
  });
  const dec = new TextDecoder();
  return { code: res.exit_code as number, out: dec.decode(res.stdout) + dec.decode(res.stderr) };
}

/** containerd CRI on both nodes: IPs, cross-node ping, hostPort, both DELs, nothing left. */
async function criLifecycle(ctx: Ctx) {
  const nodes = ctx.cluster.nodes;
  for (const c of ctx.containerds) await waitNetworkReady(c.cri);
  const baseRules = await Promise.all(nodes.map((n) => listRules(n.ns.path)));
  const from = await logSize(ctx.shimLog);
  const pods = [await startPod(ctx, 0, [HOST_PORT]), await startPod(ctx, 1, [])];
  pods.forEach((p, i) => {
    note(
      ctx,
      `CRI pod on ${nodes[i].spec.name}: PodSandboxStatus ip ${p.ip} additional_ips [${
        p.ips.slice(1).join(" ")
      }] netns ${p.netns}`,
    );
    assertPodIps("PodSandboxStatus", p.ips, nodes[i]);
  });

  for (const [i, j] of [[0, 1], [1, 0]]) {
    for (const dst of pods[j].ips) {
      const r = await execIn(ctx, i, pods[i].cid, ["ping", "-c", "2", "-W", "2", dst]);
      assertEquals(r.code, 0, `pod on ${nodes[i].spec.name} cannot ping ${dst}: ${r.out}`);
    }
  }
  note(ctx, `cross-node pod pings both ways ok to ${pods.flatMap((p) => p.ips).join(", ")}`);
  const routes = await Promise.all(
    nodes[1].spec.podCIDRs.map((c) =>
      run(nodes[0].ns.exec(["ip", c.includes(":") ? "-6" : "-4", "route", "show", c]))
    ),
  );
  note(
    ctx,
    `${nodes[0].spec.name}'s routes to ${nodes[1].spec.name}'s pods (${ctx.cluster.wiring}): ${
      routes.map((r) => r.trim()).join("; ")
    }`,
  );
  // hostPort, over each family: node 2 asks node 1's underlay address; portmap DNATs to the
  // pod's httpd. (busybox-static's wget segfaults here: nc speaks the HTTP instead.)
  for (const [k, podIp] of pods[0].ips.entries()) {
    const nc = (host: string, port: number) =>
      ["busybox", "nc", "-w", "2", host, String(port)] as const;
    const direct = await runOutput(nodes[0].ns.exec(nc(podIp, 80)), { stdin: HTTP_GET });
    assert(direct.stdout.endsWith(POD_PAGE), `node 1 cannot reach ${podIp}:80: ${direct.stderr}`);
    const hostIp = nodes[0].spec.ips[k];
    await waitFor(`hostPort ${hostIp} ${HOST_PORT}`, 6_000, async () => {
      const argv = nodes[1].ns.exec(nc(hostIp, HOST_PORT));
      return (await runOutput(argv, { stdin: HTTP_GET })).stdout.endsWith(POD_PAGE);
    }).catch(async (err) => {
      const save = hostIp.includes(":") ? "ip6tables-save" : "iptables-save";
      const nat = await run(nodes[0].ns.exec([save, "-t", "nat"]));
      const filter = await run(nodes[0].ns.exec([save, "-t", "filter"]));
      throw new Error(`${err.message}\nnode 1 nat table:\n${nat}\nnode 1 filter table:\n${filter}`);
    });
  }
  note(
    ctx,
    `hostPort ${HOST_PORT} reached from ${nodes[1].spec.name} via ${nodes[0].spec.ips.join(", ")}`,
  );
  for (const [i, node] of nodes.entries()) {
    const live = await nodeResidue(node, baseRules[i]);
    assertEquals(
      live.allocations.length,
      pods[i].ips.length,
      `allocations while pod runs: ${live.allocations}`,
    );
    assertEquals(live.veths.length, 1, `veths while pod runs: ${live.veths}`);
  }

  for (const [i, pod] of pods.entries()) {
    const { cri } = ctx.containerds[i];
    await cri.call("StopContainer", { container_id: pod.cid, timeout: 0 });
    await cri.call("RemoveContainer", { container_id: pod.cid });
    await timed(
      ctx,
      "StopPodSandbox",
      () => cri.call("StopPodSandbox", { pod_sandbox_id: pod.id }),
    );
    const afterStop = await listAllocations(nodes[i].dataDir);
    note(
      ctx,
      `after StopPodSandbox on ${nodes[i].spec.name}: allocations ${JSON.stringify(afterStop)}`,
    );
    // The first DEL (netns and prevResult present) is the one that must release the IPs.
    const kept = pod.ips.filter((ip) => afterStop.some((a) => a.endsWith(`/${ip}`)));
    assertEquals(kept, [], `StopPodSandbox kept ${kept}`);
    await timed(
      ctx,
      "RemovePodSandbox",
      () => cri.call("RemovePodSandbox", { pod_sandbox_id: pod.id }),
    );
    await assertClean(ctx, "CRI pod", nodes[i], baseRules[i]);
    if (pod.netns) assert(!(await exists(pod.netns)), `netns ${pod.netns} still there`);
  }
  const calls = callsFor(await readCalls(ctx.shimLog, from), pods.map((p) => p.id));
  note(
    ctx,
    `CNI calls for the node-1 pod:\n      ${
      formatCalls(callsFor(calls, [pods[0].id])).join("\n      ")
    }`,
  );
  const failed = calls.filter((c) => c.code !== 0);
  assertEquals(failed.map((c) => `${c.verb} ${c.plugin} rc=${c.code}`), [], "a plugin call failed");
  const dels = calls.filter((c) => c.verb === "DEL" && c.plugin === MAIN_PLUGIN[ctx.kind]);
  // containerd: DEL at StopPodSandbox (netns + prevResult), again at Remove (CNI_NETNS="").
  assertEquals(dels.length, 4, `expected 2 DELs per pod, got ${formatCalls(dels)}`);
}

/** A plugin after the main one fails ADD: containerd's rollback DEL must leave nothing. */
async function criRollback(ctx: Ctx) {
  const node = ctx.cluster.nodes[0];
  const { cri } = ctx.containerds[0];
  await waitNetworkReady(cri);
  const baseRules = await listRules(node.ns.path);
  // tuning with a sysctl that does not exist fails its ADD; its DEL has nothing to undo.
  const bad = { type: "tuning", sysctl: { "net.core.mci_no_such_sysctl": "1" } };
  const conf = ctx.kind === "mycni" ? mycniConflist(node, [bad]) : referenceConflist(node, [bad]);
  // Sorts before 10-*: containerd (max_conf_num = 1) reloads conf_dir on change and uses it.
  await writeConflist(node.confDir, "05-mci-fail.conflist", conf);
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const from = await logSize(ctx.shimLog);
    const config = sandboxConfig(ctx, `${ctx.kind}-fail`, []);
    const err = await cri.call("RunPodSandbox", { config }).then(() => null, (e: Error) => e);
    assert(err, "RunPodSandbox succeeded despite the failing tuning plugin");
    assertMatch(err.message, /tuning/);
    note(ctx, `injected ADD failure: ${err.message.slice(0, 200)}`);
    const calls = await readCalls(ctx.shimLog, from);
    note(ctx, `rollback CNI calls:\n      ${formatCalls(calls).join("\n      ")}`);
    assert(
      calls.some((c) => c.verb === "DEL" && c.plugin === MAIN_PLUGIN[ctx.kind]),
      "no rollback DEL",
    );
    await assertClean(ctx, "failed ADD", node, baseRules);
    const pods = await cri.call("ListPodSandbox", {});
    assertEquals(
      (pods.items ?? []).filter((p: CriMessage) => p.metadata?.name === `${ctx.kind}-fail`),
      [],
    );
  } finally {
    await Deno.remove(`${node.confDir}/05-mci-fail.conflist`).catch(() => {});
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * `ctr run --rm --cni` on node 1 (go-cni inside the CLI, hard-coded CNI paths): the container
 * gets an address from each podCIDR and pings a CRI pod on node 2 over every family; ctr's DEL
 * comes after the task exited, with CNI_NETNS="", and must still leave nothing behind.
 */
async function ctrRun(ctx: Ctx) {
  const nodes = ctx.cluster.nodes;
  const cd = ctx.containerds[0];
  await waitNetworkReady(ctx.containerds[1].cri);
  const baseRules = await Promise.all(nodes.map((n) => listRules(n.ns.path)));
  const ctrBase = ["ctr", "-a", cd.socket, "-n", CTR_NAMESPACE];
  await run([...ctrBase, "images", "import", ctx.images.busybox.tar]);
  const target = await startPod(ctx, 1, []);
  const id = uniqueName("mcictr");
  const from = await logSize(ctx.shimLog);
  await using ctr = await ctrWithCni({
    netns: nodes[0].ns.path,
    socket: cd.socket,
    namespace: CTR_NAMESPACE,
    confDir: nodes[0].confDir,
    binDir: ctx.shimDir,
    scratch: `${ctx.tmp}/${ctx.kind}/ctr-scratch`,
  });
  const script = ["ip -o addr show dev eth0", ...target.ips.map((ip) => `ping -c 1 -W 2 ${ip}`)]
    .join(" && ");
  const out = await timed(ctx, "ctr run --rm --cni (cycle)", () =>
    ctr.run([
      "run",
      "--rm",
      "--cni",
      // under the suite's cgroup parent, not ctr's default /<namespace>/<id>
      "--cgroup",
      `${ctx.cgroupParent}/${id}`,
      ctx.images.busybox.ref,
      id,
      "sh",
      "-c",
      script,
    ]));
  const calls = callsFor(await readCalls(ctx.shimLog, from), [`${CTR_NAMESPACE}-${id}`]);
  note(ctx, `ctr run --rm --cni CNI calls:\n      ${formatCalls(calls).join("\n      ")}`);
  assertEquals(out.code, 0, `ctr run exited ${out.code}: ${out.stdout}${out.stderr}`);
  const ips = [...out.stdout.matchAll(/\binet6? ([0-9a-f.:]+)\//g)].map((m) => m[1])
    .filter((ip) => !ip.startsWith("fe80:"));
  note(
    ctx,
    `ctr container on ${nodes[0].spec.name}: ips ${ips.join(" ")}; pinged ${
      target.ips.join(", ")
    } on ${nodes[1].spec.name}: ${out.stdout.match(/\d+ packets received/g)?.join(", ")}`,
  );
  assertPodIps("ctr container", ips, nodes[0]);
  const main = calls.filter((c) => c.plugin === MAIN_PLUGIN[ctx.kind]);
  assertEquals(main.map((c) => `${c.verb} rc=${c.code}`), ["ADD rc=0", "DEL rc=0"]);
  assertMatch(main[0].netns, /^\/proc\/\d+\/ns\/net$/);
  assertEquals(main[1].netns, "", 'ctr\'s DEL is expected with CNI_NETNS=""');
  assertEquals((await run([...ctrBase, "containers", "ls", "-q"])).trim(), "");
  await assertClean(ctx, "ctr run --rm", nodes[0], baseRules[0]);

  await ctx.containerds[1].cri.call("StopContainer", { container_id: target.cid, timeout: 0 });
  await ctx.containerds[1].cri.call("StopPodSandbox", { pod_sandbox_id: target.id });
  await ctx.containerds[1].cri.call("RemovePodSandbox", { pod_sandbox_id: target.id });
  await assertClean(ctx, "ctr's ping target", nodes[1], baseRules[1]);
}

/** The container's addresses on the network as podman reports them: IPv4, then IPv6 if any. */
async function podmanIps(ctx: Ctx, node: SimNode, name: string): Promise<string[]> {
  const [info] = JSON.parse(await ctx.podman.run(node.ns.path, node.confDir, ["inspect", name]));
  const net = info?.NetworkSettings?.Networks?.[NETWORK[ctx.kind]] ?? {};
  return [net.IPAddress ?? "", net.GlobalIPv6Address ?? ""].filter((ip: string) => ip !== "");
}

async function podmanIp(ctx: Ctx, node: SimNode, name: string): Promise<string> {
  return (await podmanIps(ctx, node, name))[0] ?? "";
}

/** Global addresses on eth0 inside a podman container, as its kernel has them ("ip/prefix"). */
async function podmanEth0(ctx: Ctx, node: SimNode, name: string): Promise<string[]> {
  const out = await ctx.podman.run(node.ns.path, node.confDir, [
    "exec",
    name,
    "ip",
    "-o",
    "addr",
    "show",
    "dev",
    "eth0",
    "scope",
    "global",
  ]);
  return [...out.matchAll(/\binet6? ([0-9a-f.:]+\/\d+)/g)].map((m) => m[1]).sort();
}

/** The node's conflist with the `ips` capability declared on the main plugin (podman sends
 * more than one static IP as runtimeConfig.ips, and libcni passes it only to a plugin that
 * declares it); returns a function that puts the original back. */
async function declareIpsCapability(node: SimNode, kind: PluginKind): Promise<() => Promise<void>> {
  const file = `10-${NETWORK[kind]}.conflist`;
  const original = await Deno.readTextFile(`${node.confDir}/${file}`);
  const conf = JSON.parse(original);
  conf.plugins[0].capabilities = { ...conf.plugins[0].capabilities, ips: true };
  await writeConflist(node.confDir, file, conf);
  return async () => {
    await Deno.writeTextFile(`${node.confDir}/.${file}.tmp`, original);
    await Deno.rename(`${node.confDir}/.${file}.tmp`, `${node.confDir}/${file}`);
  };
}

/**
 * podman: two containers talk, stop and self-exit (conmon cleanup) release; static --ip (CNI_ARGS)
 * and --ip with --ip6 (runtimeConfig.ips) are honoured and released.
 */
async function podmanLifecycle(ctx: Ctx) {
  const node = ctx.cluster.nodes[0];
  const p = (args: string[], stdin?: string) =>
    ctx.podman.run(node.ns.path, node.confDir, args, stdin);
  const baseRules = await listRules(node.ns.path);
  const from = await logSize(ctx.shimLog);
  const name = (s: string) => `mci-${ctx.kind}-${s}`;
  const common = [
    "--network",
    NETWORK[ctx.kind],
    "--cap-add",
    "NET_RAW",
    "--cgroup-parent",
    ctx.cgroupParent,
  ];
  const web = ["/bin/httpd", "-f", "-p", "80", "-h", "/www"];
  try {
    for (const c of ["a", "b"]) {
      await timed(
        ctx,
        "podman run",
        () => p(["run", "-d", "--name", name(c), ...common, ctx.images.busybox.ref, ...web]),
      );
    }
    const [ipA, ipB] = [await podmanIp(ctx, node, name("a")), await podmanIp(ctx, node, name("b"))];
    note(ctx, `podman containers: a ${ipA}, b ${ipB}`);
    assert(
      inCidr(ipA, node.spec.podCIDRs[0]) && inCidr(ipB, node.spec.podCIDRs[0]),
      `podman IPs ${ipA} ${ipB}`,
    );
    for (const dst of [ipB, node.gateway]) {
      await p(["exec", name("a"), "ping", "-c", "1", "-W", "2", dst]);
    }
    const page = await p(["exec", "-i", name("a"), "nc", "-w", "2", ipB, "80"], HTTP_GET);
    assert(page.endsWith(POD_PAGE), `a cannot fetch b's page: ${page}`);

    await timed(ctx, "podman stop", () => p(["stop", "-t", "0", name("a")]));
    let alloc = await listAllocations(node.dataDir);
    assert(!alloc.some((a) => a.endsWith(`/${ipA}`)), `podman stop kept ${ipA}: ${alloc}`);

    // A container that exits by itself: conmon runs `podman container cleanup`, which DELs.
    await p(["run", "-d", "--name", name("c"), ...common, ctx.images.busybox.ref, "sleep", "1"]);
    const ipC = await podmanIp(ctx, node, name("c")).catch(() => "");
    await waitFor("conmon cleanup of the exited container", 20_000, async () => {
      alloc = await listAllocations(node.dataDir);
      // only b's are left: one address per family
      return alloc.length === node.spec.podCIDRs.length &&
        (await listVeths(node.ns.path)).length === 1;
    });
    note(ctx, `self-exited container (${ipC || "exited before inspect"}) released; left ${alloc}`);

    // One static IP: podman passes it as CNI_ARGS IP=... It must be honoured, not refused.
    const prefix = (cidr: string) => cidr.split("/")[1];
    const staticIp = node.gateway.replace(/\.\d+$/, ".77");
    const ipFrom = await logSize(ctx.shimLog);
    await p([
      "run",
      "-d",
      "--name",
      name("d"),
      "--ip",
      staticIp,
      ...common,
      ctx.images.busybox.ref,
      ...web,
    ]);
    assertEquals(await podmanIp(ctx, node, name("d")), staticIp, "podman inspect after --ip");
    const dAddrs = await podmanEth0(ctx, node, name("d"));
    assert(
      dAddrs.includes(`${staticIp}/${prefix(node.spec.podCIDRs[0])}`),
      `--ip ${staticIp}: the container's eth0 has ${dAddrs}`,
    );
    const [dAdd] = (await readCalls(ctx.shimLog, ipFrom))
      .filter((c) => c.verb === "ADD" && c.plugin === MAIN_PLUGIN[ctx.kind]);
    assertMatch(dAdd?.args ?? "", new RegExp(`(^|;)IP=${staticIp.replaceAll(".", "\\.")}(;|$)`));
    await p(["exec", name("d"), "ping", "-c", "1", "-W", "2", node.gateway]);
    note(ctx, `--ip ${staticIp}: honoured (CNI_ARGS ${dAdd.args}), eth0 ${dAddrs.join(" ")}`);

    // Two static IPs (--ip and --ip6): podman sends them as runtimeConfig.ips, which libcni
    // passes only to a plugin whose config declares the ips capability.
    const staticIps = [node.gateway.replace(/\.\d+$/, ".78"), node.gateways[1].replace(/1$/, "78")];
    const restore = await declareIpsCapability(node, ctx.kind);
    try {
      await new Promise((r) => setTimeout(r, 300)); // podman reads the conf dir per command
      const dualFrom = await logSize(ctx.shimLog);
      await p([
        "run",
        "-d",
        "--name",
        name("e"),
        "--ip",
        staticIps[0],
        "--ip6",
        staticIps[1],
        ...common,
        ctx.images.busybox.ref,
        ...web,
      ]);
      assertEquals(
        await podmanIps(ctx, node, name("e")),
        staticIps,
        "podman inspect after --ip --ip6",
      );
      const eAddrs = await podmanEth0(ctx, node, name("e"));
      assertEquals(
        eAddrs,
        staticIps.map((ip, i) => `${ip}/${prefix(node.spec.podCIDRs[i])}`).sort(),
        "the container's eth0 after --ip --ip6",
      );
      const [eAdd] = (await readCalls(ctx.shimLog, dualFrom))
        .filter((c) => c.verb === "ADD" && c.plugin === MAIN_PLUGIN[ctx.kind]);
      assert(!/(^|;)IP=/.test(eAdd?.args ?? ""), `podman sent CNI_ARGS ${eAdd?.args}`);
      for (const gw of node.gateways) {
        await p(["exec", name("e"), "ping", "-c", "1", "-W", "2", gw]);
      }
      note(
        ctx,
        `--ip ${staticIps[0]} --ip6 ${staticIps[1]}: honoured (runtimeConfig.ips), eth0 ${
          eAddrs.join(" ")
        }`,
      );
    } finally {
      await restore();
    }
  } finally {
    await ctx.podman.output(node.ns.path, node.confDir, [
      "rm",
      "-f",
      // A step that failed early never made the later containers: without --ignore the missing
      // name fails the whole rm and leaves the others running (the host check found them).
      "--ignore",
      "-t",
      "0",
      ...["a", "b", "c", "d", "e"].map(name),
    ]);
  }
  await assertClean(ctx, "podman", node, baseRules);
  const calls = await readCalls(ctx.shimLog, from);
  const versions = calls.filter((c) => c.verb === "VERSION").length;
  note(
    ctx,
    `podman sent ${calls.length} CNI calls (${versions} VERSION); failures: ${
      JSON.stringify(
        calls.filter((c) => c.code !== 0).map((c) => `${c.verb} ${c.plugin} ${c.args}`),
      )
    }`,
  );
}

/**
 * bandwidth's ingress limit is a TBF qdisc at the root of the pod's host veth (the interface of
 * the chain's result that is not in the sandbox and not the bridge), in the node's namespace,
 * at the asked-for rate; the pod's own eth0 is left unshaped.
 */
async function assertIngressShaped(
  ctx: Ctx,
  node: SimNode,
  pod: { exec(argv: readonly string[]): string[] },
  result: { interfaces?: { name: string; sandbox?: string }[] },
  asked: { ingressRate: number; ingressBurst: number },
) {
  const hostVeth = result.interfaces?.find((i) => !i.sandbox && i.name !== "cni0")?.name;
  assert(hostVeth, `no host veth in the chain's result ${JSON.stringify(result.interfaces)}`);
  type Qdisc = { kind: string; root?: boolean; options?: { rate?: number; burst?: number } };
  const qdiscs = (argv: string[]) => run(argv).then((o) => JSON.parse(o || "[]") as Qdisc[]);
  const onVeth = await qdiscs(node.ns.exec(["tc", "-j", "qdisc", "show", "dev", hostVeth]));
  const tbf = onVeth.find((q) => q.kind === "tbf" && q.root);
  assert(tbf, `no root tbf qdisc on ${hostVeth}: ${JSON.stringify(onVeth)}`);
  // tc reports rate and burst in bytes (per second); bandwidth takes bits.
  assertEquals(tbf.options?.rate, asked.ingressRate / 8, `tbf rate on ${hostVeth}`);
  assertEquals(tbf.options?.burst, asked.ingressBurst / 8, `tbf burst on ${hostVeth}`);
  const inPod = await qdiscs(pod.exec(["tc", "-j", "qdisc", "show", "dev", "eth0"]));
  assertEquals(inPod.filter((q) => q.kind === "tbf"), [], "the pod's eth0 is shaped too");
  note(
    ctx,
    `bandwidth: root tbf on ${hostVeth} in ${node.spec.name} at ${tbf.options?.rate! * 8} bit/s ` +
      `(asked ${asked.ingressRate}), burst ${tbf.options?.burst} bytes`,
  );
}

/** libcni: main plugin + portmap + bandwidth + tuning; ADD, CHECK, DEL through the chain. */
async function libcniChain(ctx: Ctx) {
  const node = ctx.cluster.nodes[0];
  const chain = [
    { type: "bandwidth", capabilities: { bandwidth: true } },
    { type: "tuning", sysctl: { "net.core.somaxconn": "512" } },
  ];
  const conf = ctx.kind === "mycni" ? mycniConflist(node, chain) : referenceConflist(node, chain);
  const confDir = `${node.dir}/chain.d`;
  await Deno.mkdir(confDir, { recursive: true });
  await writeConflist(confDir, "10-chain.conflist", conf);
  const baseRules = await listRules(node.ns.path);
  await using pod = await tempNetns("mci");
  const call = {
    nodeNetns: node.ns.path,
    confDir,
    binDir: ctx.shimDir,
    cacheDir: `${ctx.tmp}/libcni-cache`,
    network: NETWORK[ctx.kind],
    containerId: uniqueName("mcichain"),
    podNetns: pod.path,
    capArgs: {
      portMappings: [{ hostPort: HOST_PORT + 10, containerPort: 80, protocol: "tcp" }],
      // Ingress only: bandwidth shapes egress through an ifb device, and the kernel's ifb
      // module, loaded on that first use, makes ifb0 and ifb1 in the root netns.
      bandwidth: { ingressRate: 8_000_000, ingressBurst: 80_000 },
    },
  };
  const from = await logSize(ctx.shimLog);
  const t0 = performance.now();
  const add = await cnitool(ctx.cnitoolPath, "add", call);
  (ctx.report.timings["libcni ADD (4-plugin chain)"] ??= []).push(performance.now() - t0);
  try {
    assertEquals(add.code, 0, `libcni ADD: ${add.stderr}`);
    // tuning ran last, on the result the chain handed it
    const somaxconn = await run(pod.exec(["sysctl", "-n", "net.core.somaxconn"]));
    assertEquals(somaxconn.trim(), "512");
    await assertIngressShaped(ctx, node, pod, JSON.parse(add.stdout), call.capArgs.bandwidth);
    // portmap 1.1.1's CHECK looks in the IPv6 DNAT chain for the IPv4 address's rules (and for
    // an IPv4-only pod, for a chain it never made): "could not check ipv6 dnat". CHECK without
    // port mappings so portmap skips; the full CHECK is run too, and must fail only there
    // (libcni checks in chain order).
    const { portMappings: _, ...noPorts } = call.capArgs;
    const check = await cnitool(ctx.cnitoolPath, "check", { ...call, capArgs: noPorts });
    note(ctx, `libcni CHECK (no port mappings): exit ${check.code} ${check.stderr.trim()}`);
    assertEquals(check.code, 0, `libcni CHECK: ${check.stderr}`);
    const full = await cnitool(ctx.cnitoolPath, "check", call);
    note(ctx, `libcni CHECK (with port mappings): exit ${full.code} ${full.stderr.trim()}`);
    if (full.code !== 0) assertMatch(full.stderr, /could not check ipv6 dnat/);
  } finally {
    const del = await cnitool(ctx.cnitoolPath, "del", call);
    assertEquals(del.code, 0, `libcni DEL: ${del.stderr}`);
  }
  const calls = await readCalls(ctx.shimLog, from);
  note(ctx, `libcni calls:\n      ${formatCalls(calls).join("\n      ")}`);
  const checks = calls.filter((c) => c.verb === "CHECK" && c.plugin === MAIN_PLUGIN[ctx.kind]);
  assertEquals(checks.map((c) => c.code), [0, 0], `${MAIN_PLUGIN[ctx.kind]} CHECK`);
  await assertClean(ctx, "libcni chain", node, baseRules);
}

/** Runs a CRI scenario; when it fails, removes its pods so the next scenario starts clean. */
async function withPodCleanup(ctx: Ctx, scenario: (ctx: Ctx) => Promise<void>) {
  try {
    await scenario(ctx);
  } catch (err) {
    for (const { cri } of ctx.containerds) {
      const pods = await cri.call("ListPodSandbox", {}).catch(() => ({ items: [] }));
      for (const pod of pods.items ?? []) {
        await cri.call("StopPodSandbox", { pod_sandbox_id: pod.id }).catch(() => {});
        await cri.call("RemovePodSandbox", { pod_sandbox_id: pod.id }).catch(() => {});
      }
    }
    throw err;
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
}

function printSideBySide(reports: Record<PluginKind, Report>, calls: readonly CniCall[]) {
  const ops = [...new Set(KINDS.flatMap((k) => Object.keys(reports[k].timings)))];
  const cell = (xs?: number[]) => xs?.length ? `${median(xs).toFixed(0)} ms (n=${xs.length})` : "-";
  console.log("\nlifecycle timings, median wall time (same run, same machine):");
  console.log(`  ${"operation".padEnd(30)}${"reference".padEnd(20)}${"mycni".padEnd(20)}ratio`);
  for (const op of ops) {
    const [r, m] = KINDS.map((k) => reports[k].timings[op]);
    const ratio = r?.length && m?.length ? (median(m) / median(r)).toFixed(2) : "-";
    console.log(`  ${op.padEnd(30)}${cell(r).padEnd(20)}${cell(m).padEnd(20)}${ratio}`);
  }
  console.log("plugin time inside the runtimes (from the shims), median:");
  for (const plugin of ["bridge", "host-local", "mycni", "portmap", "loopback"]) {
    for (const verb of ["ADD", "DEL"]) {
      const xs = calls.filter((c) => c.plugin === plugin && c.verb === verb).map((c) => c.ms);
      if (xs.length) console.log(`  ${`${plugin} ${verb}`.padEnd(30)}${cell(xs)}`);
    }
  }
  for (const k of KINDS) console.log(`\n[${k}]\n  ${reports[k].notes.join("\n  ")}`);
}

Deno.test({
  name:
    "interop: containerd CRI, ctr, podman and libcni drive mycni and the reference bridge side by side",
  ignore: !canRunPrivileged,
  // grpc-js keeps its channel timers; each daemon is stopped by PID in finally.
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await run(["bash", `${ROOT}scripts/setup-interop.sh`]);
  assert(await exists(PLUGIN), `${PLUGIN} missing: run bash scripts/build.sh first`);
  const before = await snapshotHost();
  const tmp = await Deno.makeTempDir({ prefix: "mci-interop-" });
  const reports = {
    reference: { timings: {}, notes: [] },
    mycni: { timings: {}, notes: [] },
  } as Record<
    PluginKind,
    Report
  >;
  const shimLog = `${tmp}/cni-calls.tsv`;
  const cgroupParent = `/${uniqueName("mci")}`;
  let residue: HostResidue | undefined;
  try {
    const images = {
      pause: await buildBusyboxImage(tmp, "docker.io/mci/pause:latest", [
        "/bin/sleep",
        "2147483647",
      ]),
      busybox: await buildBusyboxImage(tmp, "docker.io/mci/busybox:latest", ["/bin/sh"]),
    };
    // The agent installs the plugin into agentBin; until it exists, we do. The shims call it there.
    const agentBin = `${tmp}/agent-bin`;
    await Deno.mkdir(agentBin);
    await Deno.copyFile(PLUGIN, `${agentBin}/mycni`);
    // Like a node's /opt/cni/bin: the agent chains portmap only when it finds it there.
    for (const [name, real] of Object.entries(referencePlugins())) {
      await Deno.symlink(real, `${agentBin}/${name}`);
    }
    await Deno.chmod(`${agentBin}/mycni`, 0o755);
    const shimDir = `${tmp}/cni-bin`;
    await installShims(shimDir, shimLog, { ...referencePlugins(), mycni: `${agentBin}/mycni` });
    const podman = await setupPodman(`${tmp}/podman`, shimDir);
    const cnitoolPath = await buildCnitool(tmp);
    let loaded = false;

    for (const kind of KINDS) {
      const dir = `${tmp}/${kind}`;
      await using cluster = await createCluster(dir, {
        kind,
        agent: (await exists(AGENT)) ? AGENT : undefined,
        agentBinDir: agentBin,
        // IPv4 + IPv6 podCIDRs for both kinds (host-local: one range set per family)
        dualStack: true,
      });
      console.log(`\n== ${kind}: nodes wired ${cluster.wiring}`);
      await using cd1 = await startContainerd({
        dir: `${dir}/n1/containerd`,
        netns: cluster.nodes[0].ns.path,
        cniBinDir: shimDir,
        cniConfDir: cluster.nodes[0].confDir,
        sandboxImage: images.pause.ref,
        images: [images.pause.tar, images.busybox.tar],
      });
      await using cd2 = await startContainerd({
        dir: `${dir}/n2/containerd`,
        netns: cluster.nodes[1].ns.path,
        cniBinDir: shimDir,
        cniConfDir: cluster.nodes[1].confDir,
        sandboxImage: images.pause.ref,
        images: [images.pause.tar, images.busybox.tar],
      });
      if (!loaded) {
        await podman.run(cluster.nodes[0].ns.path, cluster.nodes[0].confDir, [
          "load",
          "-q",
          "-i",
          images.busybox.tar,
        ]);
        loaded = true;
      }
      const ctx: Ctx = {
        kind,
        tmp,
        cluster,
        containerds: [cd1, cd2],
        podman,
        cnitoolPath,
        shimDir,
        shimLog,
        images,
        cgroupParent,
        report: reports[kind],
      };
      await t.step(
        `${kind}: containerd CRI pod lifecycle across two nodes`,
        () => withPodCleanup(ctx, criLifecycle),
      );
      await t.step(
        `${kind}: ctr run --rm --cni (fixed CNI paths, DEL with no netns)`,
        () => withPodCleanup(ctx, ctrRun),
      );
      await t.step(
        `${kind}: containerd rolls back a failed chain ADD`,
        () => withPodCleanup(ctx, criRollback),
      );
      await t.step(
        `${kind}: podman run, stop, self-exit, --ip and --ip6`,
        () => podmanLifecycle(ctx),
      );
      await t.step(
        `${kind}: libcni ADD, CHECK, DEL through portmap, bandwidth, tuning`,
        () => libcniChain(ctx),
      );
    }
  } finally {
    printSideBySide(reports, await readCalls(shimLog));
    // Look before cleaning up: what the runtimes and the plugins left behind is the finding,
    // and a clean-up first would hide it. Runtimes keep some empty dirs at fixed paths and our
    // cgroup parent (scaffolding); a process still in that cgroup a few seconds after the last
    // scenario, a netns mount, a libcni result cache entry or a shim socket is a leftover.
    await waitCgroupEmpty(cgroupParent, 5_000);
    residue = await inspectHost(before, cgroupParent);
    // A failed run may leave containers (and conmon) running in our cgroup parent.
    await killCgroup(cgroupParent);
    const cleaned = await removeHostLeftovers(before);
    for (const m of await mountsUnder(tmp)) await runOutput(["umount", "-l", m]);
    if (cleaned.length) console.log(`\ncleaned up after the runtimes: ${cleaned.join(" ")}`);
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  assertEquals(residue?.leftovers, [], "left on the machine after the runtimes were gone");
  // And the clean-up of the scaffolding worked: the next run (or another suite) starts clean.
  assertEquals(await hostLeftovers(before), [], "left on the machine after the clean-up");
});
