// The simulated cluster (DESIGN.md "Testing"): a switch namespace with the underlay bridge,
// node namespaces each running the real agent (bin/mycni-init), pods made by exec'ing the real
// plugin the agent installed, and an external host that is the nodes' default gateway. Used by
// tests/integration/cluster_test.ts, scripts/demo.ts and bench/throughput.ts.
//
//   await using cluster = await startCluster({ nodes: 3, podsPerNode: 2, dualStack: true, mode: "static" });
//   await cluster.tcp(cluster.pods[0], cluster.pods[3].ips[0]); // { ok: true, seen: "10.244.1.2" }
import { inNetns, run, runOutput } from "../../lib/process/run.ts";
import { cidrContains, formatCidr, parseCidr, parseIp } from "../../lib/ip/cidr.ts";
import { ping as pingFrom, uniqueName } from "./netns.ts";
import { type Child, spawnChild } from "./child.ts";
import { listTable } from "./nft.ts";
import { type Probe, type ServePorts, startProbe } from "./probe_client.ts";
import type { Resource } from "./fake_apiserver.ts";
import type { ProbeReply } from "./probe.ts";
import {
  addNetns,
  API_ADDR,
  CLUSTER_CIDRS,
  createRouter,
  createSwitch,
  deleteNetns,
  EXTERNAL,
  type IpFamily,
  type NodePlan,
  planNodeOn,
  plugIntoSwitch,
  routesToOtherSegment,
  type Segment,
  segmentOf,
  SEGMENTS,
  underlayPrefix,
} from "./topology.ts";
import { routeByHand, wireNodeByHand, wirePodByHand } from "./hand_wired.ts";

/**
 * Where node routes and NAT come from: the agent with a nodes file, the agent against the fake
 * API server, or wired by hand without mycni (the bench baseline).
 */
export type ClusterMode = "static" | "api" | "manual";

/** Options for {@linkcode startCluster}. */
export interface ClusterOptions {
  readonly nodes?: number;
  readonly podsPerNode?: number;
  readonly dualStack?: boolean;
  readonly mode?: ClusterMode;
  /** manual mode: masquerade pod traffic leaving the cluster (default true). */
  readonly masquerade?: boolean;
  /** Start a probe (TCP echo of the peer address) in every namespace (default true). */
  readonly probes?: boolean;
  /** More servers in every pod's probe (NetworkPolicy tests: TCP and UDP 80 and 81). */
  readonly probePorts?: ServePorts;
  /** More servers in every node's probe (host-network pods' ports). */
  readonly nodeProbePorts?: ServePorts;
  /** API mode: collections the fake API server does not serve at first (a CRD not installed). */
  readonly absentResources?: readonly Resource[];
  /** Directory holding mycni and mycni-init (default $MYCNI_BIN_DIR, else the repo's bin/). */
  readonly binDir?: string;
  /** Progress lines (default silent). */
  readonly log?: (line: string) => void;
  // Two underlay segments and single-stack clusters (issue 11).
  /** IP families (default [4, 6], or [4] with `dualStack: false`); [6] is IPv6-only. */
  readonly families?: readonly IpFamily[];
  /**
   * 2: a second segment behind a router (no NAT), the first half of the nodes (rounded up) on
   * segment A, the rest on B. Default 1.
   */
  readonly segments?: 1 | 2;
  /** manual mode: the pods' MTU (default the veth's, 1500); the bench's same-MTU baseline. */
  readonly podMtu?: number;
  /** manual mode with 2 segments: reach the other segment over a hand-wired VXLAN device. */
  readonly vxlanByHand?: boolean;
  /** More flags for every node's agent (e.g. `--no-masquerade-cidr`). */
  readonly agentArgs?: readonly string[];
}

/** Anything traffic can start from: a node, a pod, the external host. */
export interface Host {
  /** Short name for people: n1, n1p2, external. */
  readonly name: string;
  /** The namespace's name under /run/netns. */
  readonly nsName: string;
  /** /run/netns/<nsName>. */
  readonly netns: string;
  /** Addresses others reach it at, IPv4 first. */
  readonly ips: readonly string[];
  probe?: Probe;
}

/** A node namespace with its agent and pods. */
export interface ClusterNode extends Host {
  readonly plan: NodePlan;
  readonly podCIDRs: readonly string[];
  /** Labels beyond every node's own; change them and call `publishNode` to relabel it. */
  labels: Record<string, string>;
  /** <tmp>/<name>: bin/, net.d/, ipam/, mycni.log, agent.log. */
  readonly dir: string;
  agent?: Child;
  readonly pods: Pod[];
}

/** A pod namespace attached by the plugin. */
export interface Pod extends Host {
  readonly node: ClusterNode;
  readonly containerId: string;
  /** Its Kubernetes namespace and name (published to the API in API mode). */
  readonly namespace: string;
  readonly podName: string;
  /** Its labels; change them and call `publishPod` to relabel it. */
  labels: Record<string, string>;
  readonly ports: readonly PodPort[];
  /** Settles once the API has the pod's addresses (API mode; at once otherwise). */
  podIPsPublished: Promise<string>;
}

/** A container port of a pod: what named ports resolve to. */
export interface PodPort {
  readonly name?: string;
  readonly port: number;
  readonly protocol?: "TCP" | "UDP" | "SCTP";
}

/** Options for {@linkcode Cluster.addPod}. */
export interface PodOptions {
  /** Kubernetes namespace (default "default"). */
  readonly namespace?: string;
  /** Kubernetes name (default the pod's short name, n<node>p<k>). */
  readonly name?: string;
  readonly labels?: Record<string, string>;
  readonly ports?: readonly PodPort[];
  /**
   * API mode, the kubelet's order: the Pod object (labels, node, no addresses) is published
   * before ADD, its `status.podIPs` after. By default right after ADD, and addPod waits for it;
   * with this, that many ms after ADD, in the background (`Pod.podIPsPublished`), as a busy
   * kubelet's status update lags.
   */
  readonly podIPsAfterMs?: number;
  /** API mode: publish nothing (ADD for a Pod the API does not have); `publishPod` later. */
  readonly unpublished?: boolean;
  /** Start the pod's probe (its servers) before ADD, so they answer from ADD's first instant. */
  readonly probeFirst?: boolean;
  /** Addresses to ask IPAM for (CNI_ARGS `IP=`, as podman --ip): a freed address reused. */
  readonly ips?: readonly string[];
}

/** What a CNI invocation of the installed plugin printed and returned. */
export interface PluginRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The external host: `ips` are its public TEST-NET addresses. */
export interface External extends Host {
  readonly underlayIps: readonly string[];
}

/** Routes, iptables rules (one dump per family) and the agent's nftables table, normalised. */
export interface NodeState {
  readonly routes: readonly string[];
  readonly iptables: readonly string[];
  /** The agent's table as {@linkcode listTable} prints it; "" when absent. */
  readonly nftables: string;
}

/** What an agent's /healthz says (the fields tests read; lib/node/health.ts has them all). */
export interface AgentHealth {
  readonly status: number;
  readonly ok: boolean;
  readonly synced: boolean;
  readonly watching: boolean;
  readonly lastError: string;
  readonly policy?: {
    readonly synced: boolean;
    /** The newest resourceVersion of nodes, pods, namespaces and policies the kernel enforces. */
    readonly resourceVersion: string;
    readonly errors: number;
    readonly targets: number;
    readonly clusterNetworkPolicies: {
      readonly served: boolean;
      readonly Admin: number;
      readonly Baseline: number;
      readonly errors: number;
    };
  };
}

/** A running simulated cluster; `await using` tears it all down. */
export interface Cluster extends AsyncDisposable {
  readonly id: string;
  readonly mode: ClusterMode;
  readonly dualStack: boolean;
  /** The cluster's IP families, v4 first. */
  readonly families: readonly IpFamily[];
  /** How many underlay segments (1, or 2 joined by a router). */
  readonly segments: 1 | 2;
  readonly dir: string;
  /** Where bin/mycni and bin/mycni-init come from. */
  readonly binDir: string;
  readonly nodes: ClusterNode[];
  readonly external: External;
  /** Every pod on every node. */
  pods(): Pod[];
  /** Adds node n<max+1> to the node list (file or API), wires it, starts its agent and pods. */
  addNode(
    opts?: { pods?: number; segment?: Segment; labels?: Record<string, string> },
  ): Promise<ClusterNode>;
  /**
   * (Re)publishes the node (API: its object; static: the nodes file) after changing its
   * labels. Returns the write's resourceVersion in API mode, else "".
   */
  publishNode(node: ClusterNode): Promise<string>;
  /**
   * Moves `node` to the other segment: its underlay link is re-plugged there with that
   * segment's addresses (same podCIDRs), then the node list (file or API) says so. Resolves when
   * the node list has the new address; returns that moment (performance.now()).
   */
  moveNode(node: ClusterNode, segment: Segment): Promise<number>;
  /** The segment `node` is on now. */
  segmentOf(node: ClusterNode): Segment;
  /** Stops the node's agent, removes it from the node list and deletes its namespaces. */
  removeNode(node: ClusterNode): Promise<void>;
  /** Creates one more pod on `node` with the plugin (and publishes it in API mode). */
  addPod(node: ClusterNode, opts?: PodOptions): Promise<Pod>;
  /**
   * CNI DEL, removed from the API, its namespace deleted. With `keepObject` the Pod object stays
   * in the API (a terminating pod: its addresses still listed), for `apiDelete` later.
   */
  deletePod(pod: Pod, opts?: { keepObject?: boolean }): Promise<void>;
  /**
   * Runs the node's installed plugin as the runtime would (STATUS needs no pod); the runtime's
   * view, for tests of refusals.
   */
  execPlugin(
    node: ClusterNode,
    command: "ADD" | "DEL" | "STATUS",
    pod?: { netns: string; containerId: string; namespace: string; podName: string },
  ): Promise<PluginRun>;
  /**
   * (Re)publishes the pod object (API mode): after changing its labels. Returns the
   * resourceVersion the API server gave the write.
   */
  publishPod(pod: Pod): Promise<string>;
  /** Creates or replaces an object in the fake API server (API mode); returns its resourceVersion. */
  apiPut(resource: Resource, obj: Record<string, unknown>): Promise<string>;
  /**
   * Deletes `name` or `namespace/name` from the fake API server (API mode); returns the
   * resourceVersion of the deletion.
   */
  apiDelete(resource: Resource, key: string): Promise<string>;
  /**
   * The resourceVersion of the newest write to nodes, pods, namespaces, NetworkPolicies or
   * ClusterNetworkPolicies made through this cluster ("" before any): an agent whose /healthz
   * `policy.resourceVersion` is at least this enforces every one of them.
   */
  policyWriteVersion(): string;
  /** Starts the node's agent; `env` adds to its environment (a PATH with a failing `nft`). */
  startAgent(node: ClusterNode, opts?: { env?: Record<string, string> }): Promise<void>;
  /** Stops the fake API server (API mode): the agents lose their source. */
  stopApiServer(): Promise<void>;
  /** Stops the agent (SIGKILL by default: a crash, not a clean exit). */
  stopAgent(node: ClusterNode, signal?: Deno.Signal): Promise<Deno.CommandStatus | undefined>;
  restartAgent(node: ClusterNode, signal?: Deno.Signal): Promise<void>;
  /** `mycni-init --once` with the node's flags, beside the running daemon. */
  runAgentOnce(node: ClusterNode): Promise<{ code: number; stderr: string }>;
  /** Whether the agent answers 200 on /healthz. */
  agentHealthy(node: ClusterNode): Promise<boolean>;
  /** The agent's /healthz answer (200 or 503) and its JSON body; undefined when it answers nothing. */
  agentHealth(node: ClusterNode): Promise<AgentHealth | undefined>;
  /** Waits until every node has a route to every other node's podCIDRs (and no others). */
  waitForRoutes(timeoutMs?: number): Promise<void>;
  /** Route destinations on `node` that lead to other nodes' podCIDRs, canonical CIDRs. */
  podRoutes(node: ClusterNode): Promise<string[]>;
  /** Routes and iptables rules of the node, normalised for comparison. */
  nodeState(node: ClusterNode): Promise<NodeState>;
  ping(from: Host, to: string, opts?: { count?: number }): Promise<boolean>;
  /** A real TCP connection to the probe at `to`; `seen` is the source address it saw. */
  tcp(from: Host, to: string, opts?: { timeoutMs?: number }): Promise<ProbeReply>;
  /** The source address the host at `to` saw for a TCP connection from `from`. */
  sourceSeenBy(from: Host, to: string): Promise<string | undefined>;
  /**
   * A request to the fake API server (API mode), e.g. `POST /_test/drop`; a write's
   * resourceVersion, else "".
   */
  apiRequest(method: string, path: string, body?: unknown): Promise<string>;
  /**
   * Waits until `from` gets a TCP connection through to each of `ips`. A fresh node's first
   * IPv6 packets can wait ~2 s for DAD on its new bridge; "becomes reachable" allows that.
   */
  waitReachable(from: Host, ips: readonly string[], timeoutMs?: number): Promise<void>;
  /** Tail of every agent's log, for a failing test's output. */
  logs(lines?: number): Promise<string>;
}

const REPO = new URL("../../", import.meta.url).pathname;
const CONFLIST = "10-mycni.conflist";
const HEALTH_ADDR = "127.0.0.1:9749";
/** `--once` beside the daemon must not fight it for the health port. */
const ONCE_HEALTH_ADDR = "127.0.0.1:9750";

/**
 * Starts a simulated cluster. On any failure everything made so far is removed again.
 *
 * @example
 * await using cluster = await startCluster({ nodes: 3, podsPerNode: 2, dualStack: true, mode: "static" });
 */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const mode = opts.mode ?? "static";
  const families: readonly IpFamily[] = opts.families ?? (opts.dualStack ?? true ? [4, 6] : [4]);
  const dualStack = families.length === 2;
  const segments = opts.segments ?? 1;
  const familyIndex = (f: IpFamily) => (f === 4 ? 0 : 1);
  const binDir = opts.binDir ?? Deno.env.get("MYCNI_BIN_DIR") ?? `${REPO}bin`;
  const log = opts.log ?? (() => {});
  const id = uniqueName("mcc");
  const dir = await Deno.makeTempDir({ prefix: `${id}-` });
  const namespaces: string[] = [];
  const children: Child[] = [];
  const nodes: ClusterNode[] = [];
  let apiServer: Child | undefined;
  let podCounter = 0;
  let policyWriteVersion = "";
  /** Late status updates still to come: dispose cancels those not due yet, waits for the rest. */
  const pending = new Set<{ done: Promise<unknown>; cancel: () => void }>();

  const ns = async (suffix: string) => {
    const name = `${id}${suffix}`;
    namespaces.push(name);
    return await addNetns(name);
  };
  const withProbe = async (host: Host, serve?: ServePorts) => {
    if (opts.probes === false) return;
    host.probe = await startProbe(host.netns, { logFile: `${dir}/probes.log`, serve });
    children.push(host.probe.child);
  };

  const dispose = async () => {
    for (const p of pending) p.cancel();
    await Promise.allSettled([...pending].map((p) => p.done));
    await Promise.all(
      [...nodes.flatMap((n) => [n, ...n.pods]), external]
        .map((h) => Promise.resolve(h?.probe?.[Symbol.asyncDispose]()).catch(() => {})),
    );
    await Promise.all(children.map((c) => c.stop("SIGTERM", 2000).catch(() => {})));
    await Promise.all(namespaces.map(deleteNetns));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  const sw = `${id}sw`;
  /** One switch per segment: A is `sw` (as with one segment), B is `swb`. */
  const switches = [sw, `${id}swb`] as const;
  let external: External = undefined as unknown as External;
  try {
    namespaces.push(sw);
    await createSwitch(sw);
    external = {
      name: "external",
      nsName: `${id}ex`,
      netns: await ns("ex"),
      ips: families.map((f) => EXTERNAL.public[familyIndex(f)]),
      underlayIps: families.map((f) => EXTERNAL.underlay[familyIndex(f)]),
    };
    await plugIntoSwitch(sw, external.nsName, {
      port: "ext",
      addrs: external.underlayIps.map((ip) => `${ip}/${underlayPrefix(ip)}`),
      // Replies to segment B's nodes (pods masqueraded to their address) go back by the router.
      routes: segments === 2 ? routesToOtherSegment(0, families) : [],
    });
    if (segments === 2) {
      namespaces.push(switches[1]);
      await createSwitch(switches[1]);
      namespaces.push(`${id}rt`);
      await createRouter(`${id}rt`, switches, { families, external: external.underlayIps });
    }
    await run(["ip", "-n", external.nsName, "-batch", "-"], {
      stdin: external.ips.map((ip) => `addr add ${ip}/${ip.includes(":") ? 128 : 32} dev lo\n`)
        .join(""),
    });
    const externalProbe = withProbe(external);

    const count = opts.nodes ?? 3;
    const plans = Array.from(
      { length: count },
      (_, i) => planNodeOn(i + 1, { families, segment: initialSegment(i, count) }),
    );
    await Deno.writeTextFile(`${dir}/nodes.json`, nodesFileText(plans.map((p) => nodeEntry(p))));
    await externalProbe;
    if (mode === "api") {
      apiServer = await startApiServer(
        external,
        `${dir}/nodes.json`,
        `${dir}/apiserver.log`,
        opts.absentResources ?? [],
      );
      children.push(apiServer);
    }
    log(`cluster ${id}: switch, external host${mode === "api" ? ", API server" : ""} up`);

    await settleAll(plans.map((plan) => createNode(plan)));
    nodes.sort((a, b) => a.plan.index - b.plan.index);
    if (mode === "manual") await routeAllByHand();
    log(`cluster ${id}: ${nodes.length} nodes up (${mode})`);
    for (let k = 0; k < (opts.podsPerNode ?? 2); k++) {
      // One pod per node at a time: nodes in parallel, a node's pods in order (as kubelet).
      await settleAll(nodes.map((n) => addPod(n)));
    }
    log(`cluster ${id}: ${nodes.length * (opts.podsPerNode ?? 2)} pods up`);
    if (mode !== "manual") await waitForRoutes();
  } catch (err) {
    const tail = await agentLogs(nodes, 20);
    await dispose();
    throw new Error(`Cannot start the simulated cluster ${id}: ${(err as Error).message}${tail}`, {
      cause: err,
    });
  }

  async function createNode(plan: NodePlan): Promise<ClusterNode> {
    const nodeDir = `${dir}/${plan.name}`;
    await Deno.mkdir(nodeDir, { recursive: true });
    const nsName = `${id}${plan.name}`;
    const node: ClusterNode = {
      name: plan.name,
      nsName,
      netns: await ns(plan.name),
      ips: plan.ips,
      plan,
      podCIDRs: plan.podCIDRs,
      labels: {},
      dir: nodeDir,
      pods: [],
    };
    nodes.push(node);
    await plugNode(nsName, plan);
    if (mode === "manual") {
      await wireNodeByHand(nsName, plan, {
        masquerade: opts.masquerade ?? true,
        clusterCidrs: CLUSTER_CIDRS,
      });
    } else {
      await startAgent(node);
      await waitFor(`${plan.name}'s agent to write ${CONFLIST}`, 20000, async () => {
        if (node.agent?.exited()) throw new Error(`the agent exited: ${await node.agent.status}`);
        return await exists(`${nodeDir}/net.d/${CONFLIST}`) &&
          await exists(`${nodeDir}/bin/mycni`);
      });
    }
    await withProbe(node, opts.nodeProbePorts);
    return node;
  }

  /** Segment A for the first half of the nodes (rounded up), B for the rest. */
  function initialSegment(i: number, count: number): Segment {
    return segments === 2 && i >= Math.ceil(count / 2) ? 1 : 0;
  }

  /**
   * The node's underlay link on its plan's segment: on A the external host is the default
   * gateway and the router a route to B; on B the router is the default gateway.
   */
  async function plugNode(nsName: string, plan: NodePlan): Promise<void> {
    const segment = segmentOf(plan.ips[0]);
    await plugIntoSwitch(switches[segment], nsName, {
      port: plan.name,
      addrs: plan.ips.map((ip) => `${ip}/${underlayPrefix(ip)}`),
      gateways: segment === 0
        ? external.underlayIps
        : families.map((f) => SEGMENTS[1].router[familyIndex(f)]),
      routes: segments === 2 && segment === 0 ? routesToOtherSegment(0, families) : [],
    });
  }

  /** manual mode: every node's routes to every other node, by hand (VXLAN across if asked). */
  async function routeAllByHand(): Promise<void> {
    const plans = nodes.map((n) => n.plan);
    await Promise.all(
      nodes.map((n) =>
        routeByHand(n.nsName, n.plan, plans, { vxlan: opts.vxlanByHand ?? false, segmentOf })
      ),
    );
  }

  function agentArgv(node: ClusterNode, extra: readonly string[] = []): string[] {
    const source = mode === "api"
      ? ["--kube-api", `http://${API_ADDR}`]
      : ["--nodes-file", `${dir}/nodes.json`];
    return inNetns(node.netns, [
      `${binDir}/mycni-init`,
      "--node-name",
      node.name,
      ...source,
      "--cni-bin-dir",
      `${node.dir}/bin`,
      "--cni-conf-dir",
      `${node.dir}/net.d`,
      "--cni-data-dir",
      `${node.dir}/ipam`,
      "--log-file",
      `${node.dir}/mycni.log`,
      "--health-addr",
      HEALTH_ADDR,
      // Each node's own: the default (/run/mycni) is the host's, shared by every node here.
      "--agent-socket",
      `${node.dir}/agent.sock`,
      ...opts.agentArgs ?? [],
      ...extra,
    ]);
  }

  async function startAgent(
    node: ClusterNode,
    o: { env?: Record<string, string> } = {},
  ): Promise<void> {
    if (mode === "manual") throw new Error("A hand-wired cluster has no agents");
    node.agent = await spawnChild(agentArgv(node), {
      logFile: `${node.dir}/agent.log`,
      env: o.env,
    });
    children.push(node.agent);
  }

  async function stopAgent(node: ClusterNode, signal: Deno.Signal = "SIGKILL") {
    const agent = node.agent;
    node.agent = undefined;
    return await agent?.stop(signal);
  }

  async function addPod(node: ClusterNode, po: PodOptions = {}): Promise<Pod> {
    const k = nextPodIndex(node);
    const short = `${node.name}p${k}`;
    const nsName = `${id}${short}`;
    const namespace = po.namespace ?? "default";
    const podName = po.name ?? short;
    const name = po.name ? `${namespace}/${po.name}` : short;
    const netns = await ns(short);
    const containerId = `${id}-${short}-${podCounter++}`;
    const labels = { ...po.labels };
    const ports = po.ports ?? [];
    const publish = mode === "api" && !po.unpublished;
    // The kubelet's order: the Pod object (no addresses yet) is in the API before the sandbox.
    if (publish) {
      await api(
        "PUT",
        `/_test/pods/${namespace}/${podName}`,
        podObject({
          namespace,
          podName,
          labels,
          ports,
          node,
          ips: [],
        }),
      );
    }
    // Servers listening before the sandbox is wired: whatever reaches the pod from the first
    // instant after ADD is answered, so a probe tells a policy's drop from nobody listening.
    const early: Host = { name, nsName, netns, ips: [] };
    if (po.probeFirst) await withProbe(early, opts.probePorts);
    let ips: string[];
    if (mode === "manual") {
      ips = await wirePodByHand(node.nsName, nsName, {
        plan: node.plan,
        hostIndex: k + 1,
        hostVeth: `veth${short}`,
        mtu: opts.podMtu,
      });
    } else {
      ips = await execPluginAdd(node, { netns, containerId, namespace, podName, ips: po.ips });
    }
    const pod: Pod = {
      name,
      nsName,
      netns,
      ips,
      node,
      containerId,
      namespace,
      podName,
      labels,
      ports,
      podIPsPublished: Promise.resolve(""),
      probe: early.probe,
    };
    node.pods.push(pod);
    if (publish && po.podIPsAfterMs !== undefined) {
      // The kubelet's status update, late: the test goes on at once.
      pod.podIPsPublished = lateStatus(pod, po.podIPsAfterMs);
      if (!pod.probe) await withProbe(pod, opts.probePorts);
      return pod;
    }
    // Servers first, then the addresses: a policy test probing a published pod finds it listening.
    if (!pod.probe) await withProbe(pod, opts.probePorts);
    if (publish) {
      pod.podIPsPublished = Promise.resolve(await api("PUT", podPath(pod), podObject(pod)));
    }
    return pod;
  }

  /** Publishes the pod's addresses `ms` from now; a rejection if the cluster goes first. */
  function lateStatus(pod: Pod, ms: number): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let fail = (_: Error) => {};
    const published = new Promise<string>((resolve, reject) => {
      fail = reject;
      timer = setTimeout(() => {
        timer = undefined;
        api("PUT", podPath(pod), podObject(pod)).then(resolve, reject);
      }, ms);
    });
    const entry = {
      done: published.catch(() => {}), // a test that never waits for it is told nothing
      cancel() {
        if (timer === undefined) return; // under way: dispose waits for it
        clearTimeout(timer);
        fail(new Error(`${pod.name}'s addresses were never published: the cluster is gone`));
      },
    };
    pending.add(entry);
    entry.done.finally(() => pending.delete(entry));
    return published;
  }

  /** A pod index not in use on `node` (pods can be deleted, so not simply the count). */
  function nextPodIndex(node: ClusterNode): number {
    const used = new Set(node.pods.map((p) => p.nsName));
    let k = 1;
    while (used.has(`${id}${node.name}p${k}`) || namespaces.includes(`${id}${node.name}p${k}`)) k++;
    return k;
  }

  async function deletePod(pod: Pod, o: { keepObject?: boolean } = {}): Promise<void> {
    const node = pod.node;
    node.pods.splice(node.pods.indexOf(pod), 1);
    if (mode === "api" && !o.keepObject) await api("DELETE", podPath(pod));
    await pod.probe?.[Symbol.asyncDispose]();
    if (mode !== "manual") await execPluginDel(node, pod);
    await deleteNetns(pod.nsName);
  }

  async function waitForRoutes(timeoutMs = 20000): Promise<void> {
    await waitFor("every node's routes to the other nodes' podCIDRs", timeoutMs, async () => {
      for (const node of nodes) {
        const want = nodes.filter((n) => n !== node).flatMap((n) => n.podCIDRs).sort();
        const have = await podRoutes(node);
        if (JSON.stringify(want) !== JSON.stringify(have)) return false;
      }
      return true;
    });
  }

  async function podRoutes(node: ClusterNode): Promise<string[]> {
    const out: string[] = [];
    for (const family of families.map((f) => `-${f}`)) {
      const routes = JSON.parse(
        await run(["ip", "-n", node.nsName, "-j", family, "route", "show"]),
      ) as { dst: string; gateway?: string }[];
      for (const r of routes) {
        if (r.dst === "default" || !r.gateway) continue;
        const dst = formatCidr(
          parseCidr(r.dst.includes("/") ? r.dst : `${r.dst}/${family === "-4" ? 32 : 128}`),
        );
        if (CLUSTER_CIDRS.some((c) => overlaps(c, dst)) && !node.podCIDRs.includes(dst)) {
          out.push(dst);
        }
      }
    }
    return out.sort();
  }

  async function writeNodeList(
    entries = nodes.map((n) => nodeEntry(n.plan, n.labels)),
  ): Promise<void> {
    const text = nodesFileText(entries);
    // Atomically, as a ConfigMap update or an editor's save-and-rename would.
    const tmp = `${dir}/.nodes.json.tmp`;
    await Deno.writeTextFile(tmp, text);
    await Deno.rename(tmp, `${dir}/nodes.json`);
  }

  /** A request to the fake API server; returns the resourceVersion of a write ("" otherwise). */
  async function api(method: string, path: string, body?: unknown): Promise<string> {
    if (mode !== "api") throw new Error(`A ${mode} cluster has no API server`);
    const res = await external.probe!.http(`http://${API_ADDR}${path}`, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok || (res.status ?? 500) >= 300) {
      throw new Error(
        `Fake API server: ${method} ${path} gave ${res.status ?? res.error}: ${res.body ?? ""}`,
      );
    }
    if (path === "/_test/bulk") {
      const bulk = String(JSON.parse(res.body ?? "{}").resourceVersion ?? "");
      if (BigInt(bulk || "0") > BigInt(policyWriteVersion || "0")) policyWriteVersion = bulk;
      return bulk;
    }
    if (!/^\/_test\/[a-z]+\//.test(path) || (method !== "PUT" && method !== "DELETE")) return "";
    // A PUT answers with the object, a DELETE with {deleted, resourceVersion}.
    const answer = JSON.parse(res.body ?? "{}");
    const rv = String(answer.metadata?.resourceVersion ?? answer.resourceVersion ?? "");
    if (!/^[0-9]+$/.test(rv)) {
      throw new Error(`Fake API server: ${method} ${path} gave no resourceVersion: ${res.body}`);
    }
    // Nodes too: their labels and addresses are ClusterNetworkPolicy peers.
    const policySource =
      /^\/_test\/(nodes|pods|namespaces|networkpolicies|clusternetworkpolicies)\//.test(path);
    // Writes can run in parallel (pods of three nodes): keep the newest.
    if (policySource && BigInt(rv) > BigInt(policyWriteVersion || "0")) policyWriteVersion = rv;
    return rv;
  }

  const cluster: Cluster = {
    id,
    mode,
    dualStack,
    families,
    segments,
    dir,
    binDir,
    nodes,
    external,
    pods: () => nodes.flatMap((n) => n.pods),
    async addNode(o = {}) {
      const index = Math.max(0, ...nodes.map((n) => n.plan.index)) + 1;
      const plan = planNodeOn(index, { families, segment: o.segment ?? 0 });
      const entry = nodeEntry(plan, o.labels);
      // The node object exists before its agent starts (kubelet registers, then the DaemonSet pod runs).
      if (mode === "api") await api("PUT", `/_test/nodes/${plan.name}`, entry);
      else if (mode === "static") {
        await writeNodeList([...nodes.map((n) => nodeEntry(n.plan, n.labels)), entry]);
      }
      const node = await createNode(plan);
      node.labels = { ...o.labels };
      if (mode === "manual") await routeAllByHand();
      for (let k = 0; k < (o.pods ?? opts.podsPerNode ?? 2); k++) await addPod(node);
      return node;
    },
    async removeNode(node) {
      await stopAgent(node, "SIGTERM");
      for (const h of [node, ...node.pods]) await h.probe?.[Symbol.asyncDispose]();
      nodes.splice(nodes.indexOf(node), 1);
      if (mode === "api") await api("DELETE", `/_test/nodes/${node.name}`);
      else if (mode === "static") await writeNodeList();
      for (const p of node.pods) await deleteNetns(p.nsName);
      await deleteNetns(node.nsName);
    },
    async publishNode(node) {
      if (mode === "api") {
        return await api("PUT", `/_test/nodes/${node.name}`, nodeEntry(node.plan, node.labels));
      }
      if (mode === "static") await writeNodeList();
      return "";
    },
    addPod,
    deletePod,
    execPlugin: (node, command, pod) => execPlugin(node, command, pod),
    publishPod: (pod) => api("PUT", podPath(pod), podObject(pod)),
    apiPut: (resource, obj) => {
      const m = (obj.metadata ?? {}) as { name?: string; namespace?: string };
      const key = m.namespace ? `${m.namespace}/${m.name}` : String(m.name);
      return api("PUT", `/_test/${resource}/${key}`, obj);
    },
    apiDelete: (resource, key) => api("DELETE", `/_test/${resource}/${key}`),
    policyWriteVersion: () => policyWriteVersion,
    startAgent,
    async stopApiServer() {
      if (!apiServer) throw new Error(`A ${mode} cluster has no API server`);
      await apiServer.stop("SIGKILL");
    },
    stopAgent,
    async restartAgent(node, signal = "SIGKILL") {
      await stopAgent(node, signal);
      await startAgent(node);
    },
    async runAgentOnce(node) {
      const out = await runOutput(agentArgv(node, ["--once", "--health-addr", ONCE_HEALTH_ADDR]));
      return { code: out.code, stderr: out.stderr };
    },
    async agentHealthy(node) {
      const res = await node.probe?.http(`http://${HEALTH_ADDR}/healthz`, { timeoutMs: 1000 });
      return res?.status === 200;
    },
    async agentHealth(node) {
      const res = await node.probe?.http(`http://${HEALTH_ADDR}/healthz`, { timeoutMs: 1000 });
      if (!res?.ok || res.status === undefined) return undefined;
      return { status: res.status, ...JSON.parse(res.body ?? "") };
    },
    waitForRoutes,
    podRoutes,
    async nodeState(node) {
      const routes = await Promise.all(
        families.map((f) =>
          run(["ip", "-n", node.nsName, `-${f}`, "route", "show", "table", "all"])
        ),
      );
      const iptables = await Promise.all(
        families.map(async (f) =>
          normaliseIptables(
            await run(inNetns(node.netns, [f === 4 ? "iptables-save" : "ip6tables-save"])),
          )
        ),
      );
      return { routes, iptables, nftables: await listTable(node.netns, "inet mycni") };
    },
    ping: (from, to, o = {}) => pingFrom(from.netns, to, o),
    async tcp(from, to, o = {}) {
      if (!from.probe) throw new Error(`${from.name} has no probe (probes: false)`);
      return await from.probe.tcp(to, o);
    },
    async sourceSeenBy(from, to) {
      return (await cluster.tcp(from, to)).seen;
    },
    apiRequest: api,
    segmentOf: (node) => segmentOf(node.plan.ips[0]),
    async moveNode(node, segment) {
      if (mode === "manual") throw new Error("A hand-wired cluster's nodes do not move");
      const plan = planNodeOn(node.plan.index, { families, segment });
      // Unplugged from the old switch (the pair goes with its switch end), plugged into the new.
      await run(["ip", "-n", switches[cluster.segmentOf(node)], "link", "del", node.name]);
      await plugNode(node.nsName, plan);
      Object.assign(node, { plan, ips: plan.ips });
      if (mode === "api") {
        await api("PUT", `/_test/nodes/${node.name}`, nodeEntry(plan, node.labels));
      } else await writeNodeList();
      return performance.now();
    },
    async waitReachable(from, ips, timeoutMs = 10000) {
      await Promise.all(
        ips.map((ip) =>
          waitFor(
            `${from.name} to reach ${ip}`,
            timeoutMs,
            async () => (await cluster.tcp(from, ip, { timeoutMs: 500 })).ok,
          )
        ),
      );
    },
    logs: (lines = 30) => agentLogs(nodes, lines),
    async [Symbol.asyncDispose]() {
      await dispose();
    },
  };
  return cluster;
}

/** The nodes-file entry of a node: `{name, ip, podCIDRs, ips}`, and `labels` when it has some. */
export function nodeEntry(
  plan: NodePlan,
  labels: Record<string, string> = {},
): Record<string, unknown> {
  return {
    name: plan.name,
    ip: plan.ips[0],
    podCIDRs: plan.podCIDRs,
    ips: plan.ips,
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
  };
}

function nodesFileText(entries: readonly Record<string, unknown>[]): string {
  return JSON.stringify(entries, null, 2) + "\n";
}

async function startApiServer(
  external: External,
  nodesFile: string,
  logFile: string,
  absent: readonly Resource[],
): Promise<Child> {
  const script = `${REPO}tests/harness/fake_apiserver.ts`;
  if (!(await exists(script))) {
    throw new Error(`API mode needs ${script}, which does not exist yet`);
  }
  const child = await spawnChild(
    inNetns(external.netns, [
      Deno.execPath(),
      "run",
      "-A",
      "--no-lock",
      script,
      "--listen",
      API_ADDR,
      "--nodes-file",
      nodesFile,
      ...absent.flatMap((r) => ["--absent", r]),
    ]),
    { logFile },
  );
  try {
    await waitFor("the fake API server to answer", 15000, async () => {
      if (child.exited()) throw new Error(`it exited: ${JSON.stringify(await child.status)}`);
      const res = await external.probe!.http(`http://${API_ADDR}/api/v1/nodes`, { timeoutMs: 500 });
      return res.status === 200;
    });
  } catch (err) {
    await child.stop("SIGKILL");
    throw err;
  }
  return child;
}

/** The path of a pod in the fake API server's control API. */
function podPath(pod: Pod): string {
  return `/_test/pods/${pod.namespace}/${pod.podName}`;
}

/**
 * The v1.Pod the kubelet would have reported for `pod`: running, with its addresses (none yet:
 * pending, as before its sandbox exists).
 */
export function podObject(
  pod: Pick<Pod, "namespace" | "podName" | "labels" | "ports" | "node" | "ips">,
): Record<string, unknown> {
  return {
    metadata: { name: pod.podName, namespace: pod.namespace, labels: pod.labels },
    spec: {
      nodeName: pod.node.name,
      containers: [{
        name: "c",
        image: "probe",
        ports: pod.ports.map((p) => ({
          ...(p.name ? { name: p.name } : {}),
          containerPort: p.port,
          protocol: p.protocol ?? "TCP",
        })),
      }],
    },
    status: pod.ips.length === 0 ? { phase: "Pending", hostIP: pod.node.ips[0] } : {
      phase: "Running",
      podIP: pod.ips[0],
      podIPs: pod.ips.map((ip) => ({ ip })),
      hostIP: pod.node.ips[0],
    },
  };
}

/** CNI ADD exactly as a runtime does it, in the node's namespace; returns the pod's IPs. */
async function execPluginAdd(
  node: ClusterNode,
  pod: {
    netns: string;
    containerId: string;
    namespace: string;
    podName: string;
    ips?: readonly string[];
  },
): Promise<string[]> {
  const out = await execPlugin(node, "ADD", pod);
  if (out.code !== 0) {
    throw new Error(
      `CNI ADD of ${pod.podName} on ${node.name} exited ${out.code}: ${out.stdout.trim()} ${out.stderr.trim()}`,
    );
  }
  const result = JSON.parse(out.stdout) as { ips?: { address: string }[] };
  const ips = (result.ips ?? []).map((i) => i.address.split("/")[0]);
  if (ips.length === 0) throw new Error(`CNI ADD of ${pod.podName} returned no IPs: ${out.stdout}`);
  return ips.sort((a, b) => Number(a.includes(":")) - Number(b.includes(":")));
}

/** CNI DEL of a pod, as a runtime does it when the pod goes. */
async function execPluginDel(node: ClusterNode, pod: Pod): Promise<void> {
  const out = await execPlugin(node, "DEL", pod);
  if (out.code !== 0) {
    throw new Error(`CNI DEL of ${pod.name} on ${node.name} exited ${out.code}: ${out.stdout}`);
  }
}

/** Runs the node's installed plugin with the conflist's first plugin as its config. */
async function execPlugin(
  node: ClusterNode,
  command: "ADD" | "DEL" | "STATUS",
  pod?: {
    netns: string;
    containerId: string;
    namespace: string;
    podName: string;
    ips?: readonly string[];
  },
): Promise<PluginRun> {
  const list = JSON.parse(await Deno.readTextFile(`${node.dir}/net.d/${CONFLIST}`));
  // STATUS exists from 1.1.0 (the conflist's cniVersions has it): as libcni picks it.
  const version = command === "STATUS" ? "1.1.0" : list.cniVersion;
  const conf = { ...list.plugins[0], cniVersion: version, name: list.name };
  return await runOutput(inNetns(node.netns, [`${node.dir}/bin/mycni`]), {
    stdin: JSON.stringify(conf),
    env: pod === undefined ? { CNI_COMMAND: command, CNI_PATH: `${node.dir}/bin` } : {
      CNI_COMMAND: command,
      CNI_CONTAINERID: pod.containerId,
      CNI_NETNS: pod.netns,
      CNI_IFNAME: "eth0",
      CNI_PATH: `${node.dir}/bin`,
      CNI_ARGS: `K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.podName}` +
        (pod.ips?.length ? `;IP=${pod.ips.join(",")}` : ""),
    },
  });
}

/** Drops what changes on its own between two dumps: comments and packet counters. */
function normaliseIptables(text: string): string {
  return text.split("\n").filter((l) => !l.startsWith("#")).map((l) =>
    l.replace(/\[\d+:\d+\]/g, "[]")
  ).join("\n");
}

function overlaps(cluster: string, cidr: string): boolean {
  const outer = parseCidr(cluster), inner = parseCidr(cidr);
  return inner.prefix >= outer.prefix && cidrContains(outer, parseIp(cidr.split("/")[0]));
}

async function agentLogs(nodes: readonly ClusterNode[], lines: number): Promise<string> {
  let out = "";
  for (const n of nodes) {
    const text = await Deno.readTextFile(`${n.dir}/agent.log`).catch(() => "");
    if (text) {
      out += `\n--- ${n.name} agent.log (tail) ---\n${
        text.trimEnd().split("\n").slice(-lines).join("\n")
      }`;
    }
  }
  return out;
}

/**
 * Like Promise.all, but waits for every promise before rethrowing the first failure: cleanup
 * must not start while a sibling (a plugin run) is still writing into the temp dir.
 */
async function settleAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` every 100 ms until it returns true; throws naming `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`Gave up waiting ${timeoutMs} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
