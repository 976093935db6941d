// The agent exactly as deploy/mycni.yaml starts it: command, args and env read from the manifest
// at test time, the image's layout (/usr/local/bin/mycni-init + mycni), every hostPath volume and
// the service-account dir bind-mounted at the manifest's paths in a private mount namespace, in a
// node network namespace (hostNetwork) where a TLS fake API server answers at the kubelet-injected
// KUBERNETES_SERVICE_HOST/PORT. A rename in the manifest or in the agent breaks this test.
import { basename, dirname, join } from "node:path";
import { run, runOutput } from "../../lib/process/run.ts";
import { OWNED_CHAINS } from "../../lib/node/masq.ts";
import {
  curl,
  fakeApiServer,
  ourRoutes,
  ROOT,
  spawnLogged,
  waitFor,
} from "../harness/agent_node.ts";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { exists, type TempMountNs, tempMountNs } from "../harness/mount_ns.ts";
import { canRunPrivileged, type TempNetns, tempNetns } from "../harness/netns.ts";
import { makeTestCerts } from "../harness/test_ca.ts";
import { agentInvocation, agentPod } from "../unit/deploy/deploy_files.ts";
// deno-lint-ignore no-import-prefix -- types only, pinned as tests/unit/deploy pins them
import type { IContainer } from "npm:kubernetes-models@5.1.0/v1/Container";
// deno-lint-ignore no-import-prefix -- types only, pinned as tests/unit/deploy pins them
import type { IPodSpec } from "npm:kubernetes-models@5.1.0/v1/PodSpec";

/** The kubernetes Service's ClusterIP as kind sets it; here a local address of the node netns. */
const API_HOST = "10.96.0.1";
const API_PORT = "443";
/** The service-account dir the kubelet mounts into every pod (lib/kube/client.ts reads it). */
const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
const SA_TOKEN = "mcm-test-token";
/** ENV of the image's base (debian:trixie-slim): what the container starts with. */
const IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

interface ClusterNode {
  readonly name: string;
  readonly ips: readonly [string, string];
  readonly podCIDRs: readonly [string, string];
  readonly controlPlane?: boolean;
}
const THIS_NODE = "kind-worker";
const NODES: readonly ClusterNode[] = [
  {
    name: "kind-control-plane",
    ips: ["192.0.2.10", "2001:db8::10"],
    podCIDRs: ["10.244.0.0/24", "fd00:10:244::/64"],
    controlPlane: true,
  },
  {
    name: THIS_NODE,
    ips: ["192.0.2.11", "2001:db8::11"],
    podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  },
  {
    name: "kind-worker2",
    ips: ["192.0.2.12", "2001:db8::12"],
    podCIDRs: ["10.244.2.0/24", "fd00:10:244:2::/64"],
  },
];

/** A v1.Node as a dual-stack kind cluster's API server returns it. */
function kubeNode(n: ClusterNode): Record<string, unknown> {
  const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: n.name,
      labels: {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
        ...(n.controlPlane ? { "node-role.kubernetes.io/control-plane": "" } : {}),
      },
      annotations: {
        "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
      },
    },
    spec: {
      podCIDR: n.podCIDRs[0],
      podCIDRs: [...n.podCIDRs],
      providerID: `kind://docker/kind/${n.name}`,
      ...(n.controlPlane
        ? { taints: [{ key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" }] }
        : {}),
    },
    status: {
      addresses: [
        { type: "InternalIP", address: n.ips[0] },
        { type: "InternalIP", address: n.ips[1] },
        { type: "Hostname", address: n.name },
      ],
      allocatable: { cpu: "2", memory: "8029448Ki", pods: "110" },
      capacity: { cpu: "2", memory: "8029448Ki", pods: "110" },
      conditions: [{
        type: "Ready",
        status: "False",
        lastHeartbeatTime: now,
        lastTransitionTime: now,
        reason: "KubeletNotReady",
        message: "container runtime network not ready: NetworkReady=false " +
          "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
      }],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        architecture: "amd64",
        containerRuntimeVersion: "containerd://2.1.1",
        kernelVersion: "6.8.0",
        kubeProxyVersion: "",
        kubeletVersion: "v1.33.1",
        operatingSystem: "linux",
        osImage: "Debian GNU/Linux 12 (bookworm)",
      },
    },
  };
}

/** The env the kubelet gives the container: the manifest's, the image's, the service links. */
function containerEnv(manifestEnv: Readonly<Record<string, string>>): Record<string, string> {
  const tcp = `tcp://${API_HOST}:${API_PORT}`;
  return {
    PATH: IMAGE_PATH,
    HOSTNAME: THIS_NODE, // hostNetwork: the node's hostname
    HOME: "/root",
    ...manifestEnv,
    // Injected into every pod for the default namespace's `kubernetes` Service.
    KUBERNETES_SERVICE_HOST: API_HOST,
    KUBERNETES_SERVICE_PORT: API_PORT,
    KUBERNETES_SERVICE_PORT_HTTPS: API_PORT,
    KUBERNETES_PORT: tcp,
    [`KUBERNETES_PORT_${API_PORT}_TCP`]: tcp,
    [`KUBERNETES_PORT_${API_PORT}_TCP_PROTO`]: "tcp",
    [`KUBERNETES_PORT_${API_PORT}_TCP_PORT`]: API_PORT,
    [`KUBERNETES_PORT_${API_PORT}_TCP_ADDR`]: API_HOST,
  };
}

/** The node: an underlay veth with this node's addresses and a default route, the API's VIP. */
async function setUpNode(ns: TempNetns): Promise<void> {
  const me = NODES.find((n) => n.name === THIS_NODE)!;
  const x = (argv: string[]) => run(ns.exec(argv));
  await x(["ip", "link", "add", "eth0", "mtu", "1480", "type", "veth", "peer", "name", "eth0p"]);
  await x(["ip", "link", "set", "eth0p", "up"]);
  await x(["ip", "link", "set", "eth0", "up"]);
  await x(["ip", "addr", "add", `${me.ips[0]}/24`, "dev", "eth0"]);
  await x(["ip", "addr", "add", `${me.ips[1]}/64`, "dev", "eth0", "nodad"]);
  await x(["ip", "route", "add", "default", "via", "192.0.2.1"]);
  // A route that is not the agent's: neither sync nor --uninstall may touch it.
  await x(["ip", "route", "add", "10.99.0.0/24", "via", "192.0.2.99", "proto", "static"]);
  // The Service VIP as a local address (kube-proxy's IPVS mode binds VIPs to a local device too;
  // lo, since not every kernel has the dummy driver): the fake API server listens there.
  await x(["ip", "addr", "add", `${API_HOST}/32`, "dev", "lo"]);
}

async function ruleSets(ns: TempNetns): Promise<string[]> {
  return [await run(ns.exec(["iptables-save"])), await run(ns.exec(["ip6tables-save"]))];
}

/** A hostPath volume: its dir (or file) on the node and where the container sees it. */
interface Mount {
  readonly hostPath: string;
  /** The stand-in for `hostPath` under the test's temp dir. */
  readonly host: string;
  readonly mountPath: string;
  readonly readOnly: boolean;
}

/**
 * The node's side of every hostPath volume under `hostRoot`, created as the kubelet creates
 * DirectoryOrCreate and FileOrCreate, and a map from a path in the container to the node's file.
 */
async function nodeFilesystem(hostRoot: string, podSpec: IPodSpec, container: IContainer) {
  const mounts: Mount[] = [];
  for (const m of container.volumeMounts ?? []) {
    const hp = podSpec.volumes?.find((v) => v.name === m.name)?.hostPath;
    assert(hp, `volume ${m.name} is a hostPath`);
    const host = join(hostRoot, hp.path);
    await Deno.mkdir(hp.type === "FileOrCreate" ? dirname(host) : host, { recursive: true });
    if (hp.type === "FileOrCreate") await Deno.writeFile(host, new Uint8Array());
    mounts.push({ hostPath: hp.path, host, mountPath: m.mountPath, readOnly: m.readOnly ?? false });
  }
  const onHost = (path: string) => {
    const m = mounts.find((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
    assert(m, `no volumeMount covers ${path}`);
    return join(m.host, path.slice(m.mountPath.length));
  };
  return { mounts, onHost };
}

/** The service account's projected volume (token, ca.crt, namespace) in `dir`. */
async function serviceAccount(dir: string, caCert: string): Promise<string> {
  await Deno.mkdir(dir);
  await Deno.copyFile(caCert, join(dir, "ca.crt"));
  await Deno.writeTextFile(join(dir, "token"), `${SA_TOKEN}\n`);
  await Deno.writeTextFile(join(dir, "namespace"), "kube-system");
  return dir;
}

/**
 * The image's layout: the built agent at the manifest's command and the built plugin next to it
 * (the Dockerfile copies both into one dir), alone in that dir as in the image.
 */
async function mountImage(mnt: TempMountNs, dir: string, agentPath: string): Promise<void> {
  const binDir = dirname(agentPath);
  const files = [[agentPath, "bin/mycni-init"], [join(binDir, "mycni"), "bin/mycni"]];
  await Deno.mkdir(dir);
  for (const [inImage] of files) {
    await Deno.writeFile(join(dir, basename(inImage)), new Uint8Array());
  }
  await mnt.bind(dir, binDir);
  for (const [inImage, built] of files) {
    await mnt.bind(join(ROOT, built), inImage, { readOnly: true });
  }
}

Deno.test({
  name: "mycni-init as the DaemonSet runs it installs and syncs, --uninstall leaves nothing",
  ignore: !canRunPrivileged,
}, async () => {
  // What the manifest says, read now: command + args with $(NODE_NAME) expanded, env, mounts.
  const invocation = agentInvocation(THIS_NODE);
  const { podSpec, container, flags } = agentPod();
  const flag = (name: string, fallback: string) => flags.find(([n]) => n === name)?.[1] ?? fallback;
  const binDir = flag("--cni-bin-dir", "/opt/cni/bin");
  const confDir = flag("--cni-conf-dir", "/etc/cni/net.d");
  const dataDir = flag("--cni-data-dir", "/var/lib/cni/networks");
  const logFile = flag("--log-file", "/var/log/mycni.log");
  const probe = container.readinessProbe?.httpGet;
  assert(probe, "the DaemonSet has an httpGet readiness probe");
  const healthz = `http://${probe.host ?? "127.0.0.1"}:${probe.port}${probe.path}`;
  const env = containerEnv(invocation.env);
  const me = NODES.find((n) => n.name === THIS_NODE)!;
  const others = NODES.filter((n) => n !== me);

  // The real host's copies of what the agent writes: unchanged at the end.
  const hostWatch = [
    join(binDir, "mycni"),
    join(confDir, "10-mycni.conflist"),
    "/run/xtables.lock",
  ];
  const hostBefore = hostWatch.map(exists);

  await using ns = await tempNetns("mcm");
  const tmp = await Deno.makeTempDir({ prefix: "mcm-manifest-" });
  await using _tmp = { [Symbol.asyncDispose]: () => Deno.remove(tmp, { recursive: true }) };
  await setUpNode(ns);

  const { mounts, onHost } = await nodeFilesystem(join(tmp, "host"), podSpec, container);
  assertEquals(mounts.map((m) => m.hostPath), [...invocation.hostPaths]);
  const certs = await makeTestCerts(tmp, { ips: [API_HOST], dnsNames: ["kubernetes.default.svc"] });

  await Deno.mkdir(join(tmp, "scratch"));
  await using mnt = await tempMountNs(ns.path, join(tmp, "scratch"));
  await mnt.tmpfs("/run"); // the container's own /run and /root, as a runtime gives it
  await mnt.tmpfs("/root");
  await mountImage(mnt, join(tmp, "image"), invocation.argv[0]);
  for (const m of mounts) await mnt.bind(m.host, m.mountPath, { readOnly: m.readOnly });
  const sa = await serviceAccount(join(tmp, "sa"), certs.caCert);
  await mnt.bind(sa, SA_DIR, { readOnly: true });

  // The API server, on the node's network (as the control plane's is, hostNetwork), over TLS,
  // answering only requests that carry the service account's token.
  await using api = fakeApiServer(ns, {
    listen: `${API_HOST}:${API_PORT}`,
    tls: { cert: certs.serverCert, key: certs.serverKey },
    tokenFile: join(sa, "token"),
  });
  const apiUrl = `https://${API_HOST}:${API_PORT}`;
  const tlsCurl = ["--cacert", certs.caCert];
  const authCurl = [...tlsCurl, "-H", `Authorization: Bearer ${SA_TOKEN}`];
  await waitFor(
    "the fake API server",
    async () => (await curl(ns, `${apiUrl}/api/v1/nodes`, { args: authCurl })).code === 200,
    { proc: api, ms: 15_000 },
  );
  // Without the token the server refuses, so a synced agent proves it sent the token.
  assertEquals((await curl(ns, `${apiUrl}/api/v1/nodes`, { args: tlsCurl })).code, 401);
  for (const n of NODES) {
    const { code } = await curl(ns, `${apiUrl}/_test/nodes/${n.name}`, {
      method: "PUT",
      body: JSON.stringify(kubeNode(n)),
      args: tlsCurl,
    });
    assertEquals(code, 200, `PUT node ${n.name}`);
  }

  await using agent = spawnLogged(mnt.exec(invocation.argv), { env });
  await waitFor(
    "/healthz 200 on the probe's port",
    async () => (await curl(ns, healthz)).code === 200,
    { proc: agent, ms: 15_000 },
  );
  const live = container.livenessProbe?.httpGet;
  assertEquals(
    (await curl(ns, `http://${live?.host ?? "127.0.0.1"}:${live?.port}${live?.path}`)).code,
    200,
  );

  // The plugin and its config, where the runtime on the node looks for them.
  const conflist = JSON.parse(await Deno.readTextFile(onHost(join(confDir, "10-mycni.conflist"))));
  const plugin = conflist.plugins[0];
  assertEquals(plugin.type, "mycni");
  assertEquals(plugin.podCIDRs, [...me.podCIDRs]);
  assertEquals(plugin.dataDir, dataDir);
  assertEquals(plugin.logFile, logFile);
  assertEquals(
    plugin.mtu,
    1430,
    "eth0's 1480 less VXLAN over IPv4: the DaemonSet runs --backend auto",
  );
  const installed = onHost(join(binDir, "mycni"));
  assert(((await Deno.stat(installed)).mode ?? 0) & 0o100, "the plugin is executable");
  const built = await Deno.readFile(join(ROOT, "bin/mycni"));
  const have = await Deno.readFile(installed);
  const firstLine = (b: Uint8Array) => new TextDecoder().decode(b.subarray(0, b.indexOf(10)));
  if (firstLine(built).startsWith("#!/usr/bin/env -S ")) {
    // A bundle: the node's copy runs on the runtime installed beside it, nothing of this checkout.
    const runtime = join(binDir, "mycni-deno");
    assertEquals(
      firstLine(have),
      firstLine(built).replace(/^#!\/usr\/bin\/env -S \S+ /, `#!/usr/bin/env -S ${runtime} `),
    );
    assertEquals(have.subarray(have.indexOf(10)), built.subarray(built.indexOf(10)));
    assert(((await Deno.stat(onHost(runtime))).mode ?? 0) & 0o100, "the runtime is executable");
  } else assertEquals(have, built);

  // Routes to the other nodes' podCIDRs (both families), the masquerade and forward chains.
  const want = others.flatMap((n) => n.podCIDRs.map((cidr, i) => `${cidr} via ${n.ips[i]}`));
  assertEquals(await ourRoutes(ns), want.sort());
  for (const rules of await ruleSets(ns)) {
    const fwd = OWNED_CHAINS.find((c) => c.chain === "MYCNI-FWD")!;
    assertMatch(rules, /^:MYCNI-FWD /m, "MYCNI-FWD exists");
    assert(rules.split("\n").includes(fwd.jump), `MYCNI-FWD is jumped to: ${fwd.jump}`);
    assert(!rules.includes("MYCNI-POSTRTG"), "masquerade is no longer in iptables");
  }
  const table = await run(ns.exec(["nft", "list", "table", "inet", "mycni"]));
  assertMatch(table, /ip saddr @podnets4 .* masquerade fully-random/);
  assertMatch(table, /ip6 saddr @podnets6 .* masquerade fully-random/);
  assertMatch(table, /hook forward priority filter/, "NetworkPolicy's forward chain is there");

  // SIGTERM, as the kubelet stops the pod: a clean exit, and every log line JSON, none an error.
  assertEquals(await agent.stop(), 0);
  const lines = agent.logs.map((l) => JSON.parse(l) as { level: string; msg: string });
  assertEquals(lines.filter((l) => l.level === "error"), []);
  assert(lines.some((l) => l.msg === "route added"), "the agent logged its routes");

  // --uninstall with the same args, env and mounts.
  const uninstall = spawnLogged(mnt.exec([...invocation.argv, "--uninstall"]), { env });
  assertEquals(await uninstall.exited, 0, uninstall.logs.join("\n"));
  assert(!exists(onHost(join(confDir, "10-mycni.conflist"))), "the conflist is gone");
  assertEquals([...Deno.readDirSync(onHost(binDir))], [], "the bin dir is empty again");
  assertEquals(await ourRoutes(ns), []);
  for (const rules of await ruleSets(ns)) assert(!rules.includes("MYCNI-"), rules);
  assertEquals((await runOutput(ns.exec(["nft", "list", "table", "inet", "mycni"]))).code, 1);
  assertMatch(await run(ns.exec(["ip", "route", "show", "10.99.0.0/24"])), /via 192\.0\.2\.99/);
  assertEquals(hostWatch.map(exists), hostBefore, `host paths unchanged: ${hostWatch}`);
});
