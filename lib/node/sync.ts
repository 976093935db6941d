// One reconcile of this node's datapath from the full node list: plugin and conflist, forwarding,
// masquerade/forward chains, routes. Level-triggered: it compares with what the kernel and the
// disk hold and changes only the difference, so running it twice changes nothing the second time.
import { join } from "node:path";
import type { Family } from "../ip/cidr.ts";
import { ensureChains } from "../net/iptables.ts";
import { ensureSysctl, IPV4_FORWARD, IPV6_FORWARD } from "../net/sysctl.ts";
import { createDatapath } from "./datapath.ts";
import { clusterCidrs, CONFLIST_NAME, familiesOf, renderConflist } from "./desired.ts";
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
  const datapath = createDatapath(opts, status, log);
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
    // The underlay's MTU, less the VXLAN overhead unless every peer is host-gw (datapath.ts).
    mtu = datapath.mtu(own, mtu === undefined || full || key !== ownKey);
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
      // Routes to every peer (host-gw or VXLAN), the VXLAN device, its neighbours and FDB.
      await step("reconcile routes", () => datapath.reconcile(nodes));
      status.nodesKnown = nodes.size;
      status.reconciles++;
      status.lastReconcileSeconds = (performance.now() - started) / 1000;
      // A peer no backend can reach is a sync that did not do its job (DESIGN.md "Backends").
      const ok = selfKnown && steps.ok && status.unreachable.length === 0;
      if (selfKnown && steps.ok && !ok) {
        status.lastError = `${status.unreachable.length} peer podCIDR(s) unreachable, first: ${
          status.unreachable[0]
        }`;
      }
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
