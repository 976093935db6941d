// The node agent: install, sync, then keep syncing as nodes come and go, until told to stop.
import { join } from "node:path";
import { KubeClient } from "../kube/client.ts";
import { type NodeInfo, parseKubeNode } from "../kube/node.ts";
import { watchNodes } from "../kube/node_watch.ts";
import { deleteChains } from "../net/iptables.ts";
import { flushOwnedRoutes } from "../net/route.ts";
import { deleteVxlan, VXLAN_DEVICE } from "../net/vxlan.ts";
import { Rtnl } from "../net/netlink.ts";
import { CONFLIST_NAME } from "./desired.ts";
import { healthHandler, newStatus } from "./health.ts";
import { deleteFile, fileExists, PLUGIN_NAME } from "./install.ts";
import type { Logger } from "../log/logger.ts";
import { OWNED_CHAINS } from "./masq.ts";
import { readNodesFile, watchNodesFile } from "./nodes_file.ts";
import type { AgentOptions } from "./options.ts";
import { checkTools } from "./preflight.ts";
import { stepRunner } from "./steps.ts";
import { createNodeSync, type NodeSync } from "./sync.ts";

/** Datapath re-check (routes someone deleted come back) even when no node changed, as flannel. */
const RESYNC_MS = 10_000;
/** A reconcile that failed (an `ip` or `iptables` error) is retried sooner: 0.5 s, doubling. */
const RETRY_FIRST_MS = 500;

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
  const sync = createNodeSync(opts, status, ctx.log);
  if (opts.once) return await runOnce(opts, sync, ctx.log);

  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname: opts.healthAddr.hostname,
      port: opts.healthAddr.port,
      signal: ctx.signal,
      onListen: () => {},
    }, healthHandler(status));
  } catch (err) {
    ctx.log.error("cannot serve /healthz", {
      addr: opts.healthAddr,
      error: (err as Error).message,
    });
    return 1;
  }
  const schedule = createScheduler(sync);
  let lastSourceError = "";
  const onState = (state: { watching: boolean; error?: string }) => {
    status.watching = state.watching;
    if (state.error === undefined) {
      lastSourceError = "";
      return;
    }
    status.errors++;
    status.lastError = state.error;
    if (state.error !== lastSourceError) {
      ctx.log.error("node source failed", { error: state.error });
    }
    lastSourceError = state.error;
  };
  const source = opts.nodesFile
    ? watchNodesFile(opts.nodesFile, {
      signal: ctx.signal,
      onState,
      onChange: (n) => schedule.request(n, false),
    })
    : watchApi(opts, ctx, { onState, onChange: (n, full) => schedule.request(n, full) });
  const timer = setInterval(() => schedule.request(undefined, true), RESYNC_MS);
  await source;
  clearInterval(timer);
  await schedule.idle();
  await server.finished;
  ctx.log.info("stopped", { reconciles: status.reconciles });
  return 0;
}

async function watchApi(
  opts: AgentOptions,
  ctx: AgentContext,
  cb: {
    onState: (s: { watching: boolean; error?: string }) => void;
    onChange: (n: ReadonlyMap<string, NodeInfo>, full: boolean) => void;
  },
): Promise<void> {
  using client = await KubeClient.create(opts.kube!);
  await watchNodes(client, { signal: ctx.signal, log: ctx.log, ...cb });
}

async function runOnce(opts: AgentOptions, sync: NodeSync, log: Logger): Promise<number> {
  let nodes: Map<string, NodeInfo>;
  try {
    if (opts.nodesFile) nodes = await readNodesFile(opts.nodesFile);
    else {
      using client = await KubeClient.create(opts.kube!);
      const list = await client.listNodes();
      nodes = new Map();
      for (const item of list.items) {
        const parsed = parseKubeNode(item);
        if (parsed.ok) nodes.set(parsed.node.name, parsed.node);
        else log.warn("node skipped", { node: parsed.name, reason: parsed.reason });
      }
    }
  } catch (err) {
    log.error("cannot read the node list", { error: (err as Error).message });
    return 1;
  }
  return (await sync.run(nodes, true)) ? 0 : 1;
}

/**
 * Coalesces reconcile requests: one runs at a time, and the requests that arrive meanwhile
 * become one more run over the newest node list. A failed run is retried with backoff (0.5 s
 * doubling up to the resync period) until one succeeds.
 */
function createScheduler(sync: NodeSync) {
  let nodes: ReadonlyMap<string, NodeInfo> | undefined;
  let full = false;
  let again = false;
  let running: Promise<void> | undefined;
  let retryMs = 0;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  const retryLater = (ok: boolean) => {
    clearTimeout(retryTimer);
    retryTimer = undefined;
    if (ok) {
      retryMs = 0;
      return;
    }
    retryMs = retryMs === 0 ? RETRY_FIRST_MS : Math.min(retryMs * 2, RESYNC_MS);
    retryTimer = setTimeout(() => request(undefined, true), retryMs);
  };
  const loop = async () => {
    do {
      again = false;
      const snapshot = new Map(nodes!);
      const f = full;
      full = false;
      retryLater(await sync.run(snapshot, f));
    } while (again);
    running = undefined;
  };
  function request(next: ReadonlyMap<string, NodeInfo> | undefined, isFull: boolean) {
    if (next) nodes = next;
    full ||= isFull;
    if (!nodes) return; // nothing listed yet: never reconcile from an empty guess
    if (running) again = true;
    else running = loop();
  }
  return {
    request,
    /** Waits for the running reconcile and cancels a pending retry (shutdown). */
    async idle() {
      await (running ?? Promise.resolve());
      clearTimeout(retryTimer);
    },
  };
}

/** `--uninstall`: the conflist, the plugin, our chains (both families), our routes. */
async function uninstall(opts: AgentOptions, log: Logger): Promise<number> {
  const steps = stepRunner(log);
  const { step } = steps;
  for (const path of [join(opts.cniConfDir, CONFLIST_NAME), join(opts.cniBinDir, PLUGIN_NAME)]) {
    await step(`remove ${path}`, async () => {
      if (await deleteFile(path)) log.info("file removed", { path });
    });
  }
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
