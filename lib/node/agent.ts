// The node agent: install, sync, then keep syncing as nodes, pods, namespaces and policies
// change, until told to stop.
import { join } from "node:path";
import { KubeClient } from "../kube/client.ts";
import {
  type ClusterPolicyEntry,
  parseClusterNetworkPolicy,
} from "../kube/cluster_network_policy.ts";
import { nameOf, namespacedKeyOf, type Parsed, runInformer } from "../kube/informer.ts";
import { parseNamespace } from "../kube/namespace.ts";
import { parseNetworkPolicy } from "../kube/network_policy.ts";
import { type NodeInfo, parseKubeNode } from "../kube/node.ts";
import { watchNodes } from "../kube/node_watch.ts";
import { parsePod } from "../kube/pod.ts";
import type { NamespaceInfo, PodInfo, PolicyEntry } from "../kube/policy_objects.ts";
import { NotFoundError } from "../kube/watch.ts";
import type { Logger } from "../log/logger.ts";
import { deleteChains } from "../net/iptables.ts";
import { deleteTable } from "../nft/cli.ts";
import { flushOwnedRoutes } from "../net/route.ts";
import { deleteVxlan, VXLAN_DEVICE } from "../net/vxlan.ts";
import { Rtnl } from "../net/netlink.ts";
import { CONFLIST_NAME, NETWORK_NAME } from "./conflist.ts";
import { type AgentStatus, healthHandler, newStatus } from "./health.ts";
import { deleteFile, fileExists, PLUGIN_NAME, PLUGIN_RUNTIME_NAME } from "./install.ts";
import { OWNED_CHAINS } from "./masq.ts";
import { NFT_TABLE } from "../nft/ruleset.ts";
import { readNodesFile, watchNodesFile } from "./nodes_file.ts";
import type { AgentOptions } from "./options.ts";
import { checkTools } from "./preflight.ts";
import { createScheduler, RESYNC_MS, type Scheduler } from "./scheduler.ts";
import { type Admission, createAdmission } from "./admission.ts";
import { serveAdmission } from "./admission_server.ts";
import { readIpamBindings } from "./ipam_bindings.ts";
import type { TableSync } from "../nft/sync.ts";
import { deleteConntrackEntries } from "../net/conntrack.ts";
import { validCidrs } from "../ip/canonical.ts";
import type { Cidr } from "../ip/cidr.ts";
import { stepRunner } from "./steps.ts";
import { type ClusterState, createNodeSync, nodeSteps, type NodeSync } from "./sync.ts";
import { startPolicySight } from "./policy_sight.ts";

/** The outside world the agent is given. */
export interface AgentContext {
  readonly log: Logger;
  /** Aborted on SIGTERM/SIGINT. */
  readonly signal: AbortSignal;
  readonly env: Readonly<Record<string, string>>;
}

/**
 * Runs the agent as `opts` says and returns the exit code: `--uninstall` and `--once` return
 * when done, otherwise it runs until `ctx.signal` aborts (0).
 *
 * @example
 * Deno.exit(await runAgent(parseAgentArgs(Deno.args, env), { log, signal, env }));
 */
export async function runAgent(opts: AgentOptions, ctx: AgentContext): Promise<number> {
  if (!checkTools(ctx.env.PATH ?? "", ctx.log)) return 1;
  if (opts.uninstall) return await uninstall(opts, ctx.log);
  const status = newStatus();
  status.policyEnabled = opts.networkPolicy && !opts.nodesFile;
  if (opts.networkPolicy && opts.nodesFile) {
    ctx.log.info("NetworkPolicy needs the Kubernetes API: a nodes file enforces none");
  }
  if (opts.once) {
    return await runOnce(
      opts,
      createNodeSync(opts, status, ctx.log),
      status.policyEnabled,
      ctx.log,
    );
  }
  // Strict mode and the flow log, fed every policy table the kernel takes.
  await using sight = startPolicySight(opts, status.policyEnabled, ctx.log, ctx.signal);
  // With policy, pods are admitted (DESIGN.md "Pod lifecycle"): the table sync is shared by the
  // reconcile and the admission's fast path, and the bindings come from the IPAM store first.
  const tables = sight.tableDeps.tables;
  const admission = status.policyEnabled ? createAgentAdmission(opts, tables, ctx.log) : undefined;
  const steps = nodeSteps(opts, status.policyEnabled, ctx.log, {
    ...sight.tableDeps,
    bindings: admission?.tables,
  });
  const sync = createNodeSync(opts, status, ctx.log, steps);

  let server: Deno.HttpServer;
  try {
    server = Deno.serve(
      {
        hostname: opts.healthAddr.hostname,
        port: opts.healthAddr.port,
        signal: ctx.signal,
        onListen: () => {},
      },
      healthHandler(status, {
        drops: () => sync.drops(),
        explain: status.policyEnabled ? (q) => sync.explain(q) : undefined,
        ...sight.health,
      }),
    );
  } catch (err) {
    ctx.log.error("cannot serve /healthz", {
      addr: opts.healthAddr,
      error: (err as Error).message,
    });
    return 1;
  }
  const scheduler = createScheduler(sync, (rv) => status.policyResourceVersion = rv);
  let schedule: Scheduler = scheduler;
  if (admission) {
    const served = await serveAgentSocket(opts, admission, scheduler, ctx);
    if (!served) return 1;
    schedule = served;
  }
  const sources = sourceHealth(ctx.log, (watching, error) => {
    status.watching = watching;
    if (error !== undefined) {
      status.errors++;
      status.lastError = error;
    }
  });
  const source = opts.nodesFile
    ? watchNodesFile(opts.nodesFile, {
      signal: ctx.signal,
      onState: sources.reporter("nodes"),
      onChange: (n) => schedule.nodes(n, false),
    })
    : watchApi(opts, ctx, status, schedule, sources);
  const timer = setInterval(() => {
    admission?.resync(); // a missed DEL or ADD, a GC'd address: the IPAM store says
    schedule.resync();
  }, RESYNC_MS);
  await source;
  clearInterval(timer);
  await schedule.idle();
  await server.finished;
  ctx.log.info("stopped", { reconciles: status.reconciles });
  return 0;
}

/** The admission over the IPAM store the conflist names and the kernel's table and conntrack. */
function createAgentAdmission(opts: AgentOptions, tables: TableSync, log: Logger): Admission {
  return createAdmission({
    nodeName: opts.nodeName,
    log,
    readBindings: () => readIpamBindings(opts.cniDataDir, NETWORK_NAME),
    kernel: {
      patch: (edit) => tables.patch(edit),
      deleteConntrack: (ips) => deleteConntrackEntries(ips),
    },
  });
}

/**
 * Serves the admission socket before anything writes a conflist naming it (the first reconcile
 * does), and returns the scheduler as the sources should call it: the node list also gives the
 * podCIDRs admissions are checked against, a pod change also wakes admits waiting for their Pod.
 * Undefined (logged) when the socket cannot be served.
 */
async function serveAgentSocket(
  opts: AgentOptions,
  admission: Admission,
  scheduler: Scheduler,
  ctx: AgentContext,
): Promise<Scheduler | undefined> {
  let podCIDRs: Cidr[] = [];
  admission.attach(scheduler);
  try {
    await serveAdmission({
      path: opts.agentSocket,
      handler: admission.handler,
      podCIDRs: () => podCIDRs,
      signal: ctx.signal,
      log: ctx.log,
    });
  } catch (err) {
    ctx.log.error("cannot serve admissions", {
      path: opts.agentSocket,
      error: (err as Error).message,
    });
    return undefined;
  }
  ctx.log.info("serving admissions", { path: opts.agentSocket });
  return {
    ...scheduler,
    nodes(next, isFull) {
      podCIDRs = validCidrs(next.get(opts.nodeName)?.podCIDRs ?? []);
      scheduler.nodes(next, isFull);
    },
    policy(next) {
      scheduler.policy(next);
      if (next.pods) admission.podsChanged();
    },
  };
}

async function watchApi(
  opts: AgentOptions,
  ctx: AgentContext,
  status: AgentStatus,
  schedule: Scheduler,
  sources: ReturnType<typeof sourceHealth>,
): Promise<void> {
  using client = await KubeClient.create(opts.kube!);
  const common = { signal: ctx.signal, log: ctx.log };
  const watches = [
    watchNodes(client, {
      ...common,
      onState: sources.reporter("nodes"),
      onChange: (n, full) => schedule.nodes(n, full),
      // Node labels and addresses are ClusterNetworkPolicy peers: a policy source like the rest.
      onProgress: (rv) => schedule.progress(rv),
    }),
  ];
  if (status.policyEnabled) {
    watches.push(
      runInformer(client, {
        ...common,
        ...POD_INFORMER,
        onState: sources.reporter("pods"),
        onProgress: (rv) => schedule.progress(rv),
        onChange: (pods) => schedule.policy({ pods }),
      }),
      runInformer(client, {
        ...common,
        ...NAMESPACE_INFORMER,
        onState: sources.reporter("namespaces"),
        onProgress: (rv) => schedule.progress(rv),
        onChange: (namespaces) => schedule.policy({ namespaces }),
      }),
      runInformer(client, {
        ...common,
        ...POLICY_INFORMER,
        onState: sources.reporter("networkpolicies"),
        onProgress: (rv) => schedule.progress(rv),
        onChange: (policies) => schedule.policy({ policies }),
      }),
      runInformer(client, {
        ...common,
        ...CLUSTER_POLICY_INFORMER,
        // A cluster without the CRD enforces NetworkPolicy alone and asks again every 30 s.
        optional: {
          retryMs: CRD_RETRY_MS,
          onServed: (served) => status.clusterPolicyServed = served,
        },
        onState: sources.reporter("clusternetworkpolicies"),
        onProgress: (rv) => schedule.progress(rv),
        onChange: (clusterPolicies) => schedule.policy({ clusterPolicies }),
      }),
    );
  }
  await Promise.all(watches);
}

/** How often a cluster without the ClusterNetworkPolicy CRD (404) is asked again. */
export const CRD_RETRY_MS = 30_000;

const POD_INFORMER = {
  path: "/api/v1/pods",
  what: "pods",
  parse: (obj: unknown): Parsed<PodInfo> => {
    const p = parsePod(obj);
    return p.ok ? { ok: true, key: `${p.pod.namespace}/${p.pod.name}`, value: p.pod } : p;
  },
  keyOf: namespacedKeyOf,
  same: (a: PodInfo, b: PodInfo) => JSON.stringify(a) === JSON.stringify(b),
};

const NAMESPACE_INFORMER = {
  path: "/api/v1/namespaces",
  what: "namespaces",
  parse: (obj: unknown): Parsed<NamespaceInfo> => {
    const p = parseNamespace(obj);
    return p.ok ? { ok: true, key: p.namespace.name, value: p.namespace } : p;
  },
  keyOf: nameOf,
  same: (a: NamespaceInfo, b: NamespaceInfo) => JSON.stringify(a) === JSON.stringify(b),
};

const POLICY_INFORMER = {
  path: "/apis/networking.k8s.io/v1/networkpolicies",
  what: "networkpolicies",
  parse: (obj: unknown): Parsed<PolicyEntry> => {
    const p = parseNetworkPolicy(obj);
    if (!p.ok) return p;
    const { namespace, name } = p.entry.policy;
    return { ok: true, key: `${namespace}/${name}`, value: p.entry };
  },
  keyOf: namespacedKeyOf,
  same: (a: PolicyEntry, b: PolicyEntry) => JSON.stringify(a) === JSON.stringify(b),
};

const CLUSTER_POLICY_INFORMER = {
  path: "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
  what: "clusternetworkpolicies",
  parse: (obj: unknown): Parsed<ClusterPolicyEntry> => {
    const p = parseClusterNetworkPolicy(obj);
    return p.ok ? { ok: true, key: p.entry.policy.name, value: p.entry } : p;
  },
  keyOf: nameOf,
  same: (a: ClusterPolicyEntry, b: ClusterPolicyEntry) => JSON.stringify(a) === JSON.stringify(b),
};

/**
 * Tracks every watched source: the agent is "watching" only while all of them are up, and each
 * source's failure is logged once until it recovers.
 */
function sourceHealth(log: Logger, report: (watching: boolean, error?: string) => void) {
  const up = new Map<string, boolean>();
  const lastError = new Map<string, string>();
  return {
    reporter(name: string) {
      up.set(name, false);
      return (state: { watching: boolean; error?: string }) => {
        up.set(name, state.watching);
        const watching = [...up.values()].every((v) => v);
        if (state.error === undefined) {
          lastError.delete(name);
          report(watching);
          return;
        }
        if (state.error !== lastError.get(name)) {
          log.error(`${name} source failed`, { error: state.error });
        }
        lastError.set(name, state.error);
        report(watching, state.error);
      };
    },
  };
}

async function runOnce(
  opts: AgentOptions,
  sync: NodeSync,
  policy: boolean,
  log: Logger,
): Promise<number> {
  let state: ClusterState;
  try {
    if (opts.nodesFile) state = { nodes: await readNodesFile(opts.nodesFile) };
    else {
      using client = await KubeClient.create(opts.kube!);
      const nodes = new Map<string, NodeInfo>();
      for (const item of (await client.listNodes()).items) {
        const parsed = parseKubeNode(item);
        if (parsed.ok) nodes.set(parsed.node.name, parsed.node);
        else {
          log.warn("object skipped", {
            resource: "nodes",
            key: parsed.name,
            reason: parsed.reason,
          });
        }
      }
      state = {
        nodes,
        policy: policy
          ? {
            pods: await listOnce(client, POD_INFORMER, log),
            namespaces: await listOnce(client, NAMESPACE_INFORMER, log),
            policies: await listOnce(client, POLICY_INFORMER, log),
            clusterPolicies: await listOnce(client, CLUSTER_POLICY_INFORMER, log).catch((err) => {
              if (!(err instanceof NotFoundError)) throw err;
              log.warn("collection not served: running without it", {
                resource: CLUSTER_POLICY_INFORMER.what,
              });
              return new Map<string, ClusterPolicyEntry>();
            }),
          }
          : undefined,
        // What ADD told a running agent outranks the API here too (the IPAM store has it all).
        ...(policy
          ? {
            bindings: { bindings: readIpamBindings(opts.cniDataDir, NETWORK_NAME), generation: 1 },
          }
          : {}),
      };
    }
  } catch (err) {
    log.error("cannot read the cluster state", { error: (err as Error).message });
    return 1;
  }
  return (await sync.run(state, { full: true, nodesChanged: true })) ? 0 : 1;
}

async function listOnce<T>(
  client: KubeClient,
  informer: { path: string; what: string; parse: (obj: unknown) => Parsed<T> },
  log: Logger,
): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  for (const item of (await client.list(informer.path)).items) {
    const p = informer.parse(item);
    if (p.ok) out.set(p.key, p.value);
    else log.warn("object skipped", { resource: informer.what, key: p.key, reason: p.reason });
  }
  return out;
}

/** `--uninstall`: the conflist, the plugin, our table and chains (both families), our routes. */
async function uninstall(opts: AgentOptions, log: Logger): Promise<number> {
  const steps = stepRunner(log);
  const { step } = steps;
  for (
    const path of [
      join(opts.cniConfDir, CONFLIST_NAME),
      join(opts.cniBinDir, PLUGIN_NAME),
      join(opts.cniBinDir, PLUGIN_RUNTIME_NAME),
    ]
  ) {
    await step(`remove ${path}`, async () => {
      if (await deleteFile(path)) log.info("file removed", { path });
    });
  }
  await step("remove the nftables table", async () => {
    if (await deleteTable(NFT_TABLE.family, NFT_TABLE.name)) {
      log.info("nftables table removed", { table: `${NFT_TABLE.family} ${NFT_TABLE.name}` });
    }
  });
  for (const family of [4, 6] as const) {
    // No IPv6 in this kernel: there can be no ip6tables rules of ours either.
    if (family === 6 && !(await fileExists("/proc/sys/net/ipv6/conf/all/forwarding"))) continue;
    await step(`remove IPv${family} iptables chains`, async () => {
      for (const chain of await deleteChains(family, OWNED_CHAINS)) {
        log.info("iptables chain removed", { family, chain });
      }
    });
  }
  await step("remove routes", () => {
    const n = flushOwnedRoutes();
    if (n > 0) log.info("routes removed", { count: n });
  });
  // Its neighbours, FDB entries, VTEP addresses and any route left on it go with the device.
  await step("remove the VXLAN device", () => {
    using nl = Rtnl.open();
    if (deleteVxlan(nl)) log.info("vxlan device removed", { dev: VXLAN_DEVICE });
  });
  return steps.ok ? 0 : 1;
}
