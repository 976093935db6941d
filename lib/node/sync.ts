// One reconcile of this node's datapath from the full node list: plugin and conflist, forwarding,
// masquerade/forward chains, routes. Level-triggered: it compares with what the kernel and the
// disk hold and changes only the difference, so running it twice changes nothing the second time.
import { join } from "node:path";
import type { Family } from "../ip/cidr.ts";
import { ensureChains } from "../net/iptables.ts";
import { applyRouteBatch, defaultRouteMtu, listOwnedRoutes, ROUTE_PROTO } from "../net/route.ts";
import { ensureSysctl, IPV4_FORWARD, IPV6_FORWARD } from "../net/sysctl.ts";
import {
  clusterCidrs,
  CONFLIST_NAME,
  desiredRoutes,
  familiesOf,
  renderConflist,
} from "./desired.ts";
import type { AgentStatus } from "./health.ts";
import {
  defaultPluginSource,
  ensureFileContent,
  fileExists,
  installPlugin,
  PLUGIN_NAME,
} from "./install.ts";
import type { Logger } from "../log/logger.ts";
import { desiredChains } from "./masq.ts";
import type { NodeInfo } from "../kube/node.ts";
import type { AgentOptions } from "./options.ts";
import { planRoutes } from "./route_plan.ts";
import { stepRunner } from "./steps.ts";

/** Rules unchanged in our memory are still re-checked against the kernel this often. */
const RULES_RECHECK_MS = 60_000;

/** Runs reconciles for one agent; remembers what it did to keep no-op reconciles cheap. */
export interface NodeSync {
  /** Reconciles towards `nodes`; `full` also re-verifies what memory says is in place. */
  run(nodes: ReadonlyMap<string, NodeInfo>, full: boolean): Promise<boolean>;
}

/** A reconciler for the agent described by `opts`, reporting into `status`. */
export function createNodeSync(opts: AgentOptions, status: AgentStatus, log: Logger): NodeSync {
  const pluginSrc = opts.pluginSrc ?? defaultPluginSource();
  const pluginDst = join(opts.cniBinDir, PLUGIN_NAME);
  const conflistPath = join(opts.cniConfDir, CONFLIST_NAME);
  let pluginInstalled = false;
  let mtu: number | undefined;
  let ownKey = "";
  const rulesApplied = new Map<Family, string>();
  let rulesCheckedAt = 0;
  let skippedSeen = new Set<string>();
  let missingSelfLogged = false;
  let initialDone = false;

  async function ensurePlugin(full: boolean): Promise<void> {
    if (pluginInstalled && !(full && !(await fileExists(pluginDst)))) return;
    if (await installPlugin(pluginSrc, opts.cniBinDir)) {
      log.info("plugin installed", { src: pluginSrc, dst: pluginDst });
    }
    pluginInstalled = true;
  }

  async function ensureConflist(own: NodeInfo, full: boolean): Promise<void> {
    const key = own.podCIDRs.join(",");
    if (mtu === undefined || full || key !== ownKey) mtu = await defaultRouteMtu();
    ownKey = key;
    const text = renderConflist({
      podCIDRs: own.podCIDRs,
      dataDir: opts.cniDataDir,
      logFile: opts.logFile,
      mtu,
      portmap: await fileExists(join(opts.cniBinDir, "portmap")),
    });
    if (await ensureFileContent(conflistPath, text)) {
      log.info("conflist written", { path: conflistPath, podCIDRs: own.podCIDRs, mtu });
    }
  }

  async function ensureForwarding(own: NodeInfo | undefined): Promise<void> {
    if (await ensureSysctl(IPV4_FORWARD, "1")) {
      log.info("sysctl set", { key: IPV4_FORWARD, value: "1" });
    }
    if (own && familiesOf(own.podCIDRs).includes(6) && await ensureSysctl(IPV6_FORWARD, "1")) {
      log.info("sysctl set", { key: IPV6_FORWARD, value: "1" });
    }
  }

  async function ensureRules(
    nodes: ReadonlyMap<string, NodeInfo>,
    own: NodeInfo | undefined,
    full: boolean,
  ) {
    const cluster = clusterCidrs(opts.clusterCidrs, nodes.values());
    const pods = (own?.podCIDRs ?? []).filter((c) => familiesOf([c]).length > 0);
    const recheck = full && Date.now() - rulesCheckedAt >= RULES_RECHECK_MS;
    if (recheck) rulesCheckedAt = Date.now();
    for (const family of familiesOf([...pods, ...cluster])) {
      const chains = desiredChains(family, { clusterCidrs: cluster, podCIDRs: pods });
      const key = JSON.stringify(chains);
      if (!recheck && rulesApplied.get(family) === key) continue;
      rulesApplied.delete(family);
      for (const chain of await ensureChains(family, chains)) {
        const rules = chains.find((c) => `${c.table}/${c.chain}` === chain)?.rules.length;
        log.info("iptables chain synced", { family, chain, rules });
      }
      rulesApplied.set(family, key);
    }
  }

  async function reconcileRoutes(nodes: ReadonlyMap<string, NodeInfo>): Promise<void> {
    const { routes, skipped } = desiredRoutes(nodes.values(), opts.nodeName);
    const seen = new Set<string>();
    for (const s of skipped) {
      const key = `${s.node}\n${s.reason}`;
      seen.add(key);
      if (!skippedSeen.has(key)) log.warn("node skipped", { node: s.node, reason: s.reason });
    }
    skippedSeen = seen;
    const changes = planRoutes(routes, await listOwnedRoutes(), ROUTE_PROTO);
    const failures = await applyRouteBatch(changes.map((c) => c.line));
    const failed = new Set(failures.map((f) => f.line));
    const verb = {
      add: "route added",
      replace: "route replaced",
      delete: "route deleted",
    } as const;
    for (const c of changes) {
      if (!failed.has(c.line)) log.info(verb[c.op], { dst: c.dst, via: c.via });
    }
    status.routeChanges += changes.length - failed.size;
    if (failures.length === 0) {
      status.routesProgrammed = routes.length;
      return;
    }
    for (const f of failures) log.error("route change failed", { change: f.line, error: f.error });
    status.routesProgrammed = (await listOwnedRoutes()).length;
    throw new Error(
      `${failures.length} of ${changes.length} route changes failed, first: ${failures[0].line}: ${
        failures[0].error
      }`,
    );
  }

  return {
    async run(nodes, full) {
      const started = performance.now();
      let selfKnown = true;
      const steps = stepRunner(log, (message) => {
        status.errors++;
        status.lastError = message;
      });
      const { step } = steps;
      full ||= !initialDone;
      const own = nodes.get(opts.nodeName);
      if (!own) {
        selfKnown = false;
        status.lastError =
          `Node ${opts.nodeName} is not in the node list (or has no podCIDR/address)`;
        if (!missingSelfLogged) {
          log.warn("this node is not in the node list yet", { node: opts.nodeName });
        }
        missingSelfLogged = true;
      } else missingSelfLogged = false;
      await step("install the plugin", () => ensurePlugin(full));
      if (own) await step("write the conflist", () => ensureConflist(own, full));
      await step("enable forwarding", () => ensureForwarding(own));
      await step("sync iptables rules", () => ensureRules(nodes, own, full));
      await step("reconcile routes", () => reconcileRoutes(nodes));
      status.nodesKnown = nodes.size;
      status.reconciles++;
      status.lastReconcileSeconds = (performance.now() - started) / 1000;
      const ok = selfKnown && steps.ok;
      status.synced = ok;
      if (ok) {
        status.lastSyncTime = Date.now() / 1000;
        status.lastError = "";
        if (!initialDone) {
          log.info("initial sync done", {
            nodes: nodes.size,
            routes: status.routesProgrammed,
            msSinceStart: Math.round(performance.now()),
          });
        }
        initialDone = true;
      }
      return ok;
    },
  };
}
