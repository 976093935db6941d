// The reconcile's first two steps: the plugin binary installed (and proven to run) and the
// conflist written, each remembering what it did so that a no-op resync touches no file.
import { join } from "node:path";
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log/logger.ts";
import { CONFLIST_NAME, renderConflist } from "./conflist.ts";
import {
  ensureFileContent,
  fileExists,
  installPlugin,
  PLUGIN_NAME,
  type PluginInstall,
  pluginProblem,
} from "./install.ts";
import type { StepReport } from "./steps.ts";

/** What is in place is checked again this often on full resyncs, even when memory says so. */
export const RECHECK_MS = 60_000;

/** The file operations of the install steps, as lib/node/install.ts has them (a fake in tests). */
export interface InstallFiles {
  installPlugin(src: string, binDir: string): Promise<PluginInstall>;
  /** Why the installed plugin cannot run, undefined when it answers VERSION. */
  pluginProblem(path: string): Promise<string | undefined>;
  ensureFileContent(path: string, text: string): Promise<boolean>;
  fileExists(path: string): Promise<boolean>;
}

/** The real files. */
export const INSTALL_FILES: InstallFiles = {
  installPlugin,
  pluginProblem,
  ensureFileContent,
  fileExists,
};

/** What the plugin step found. */
export interface PluginReport extends StepReport {
  /** The installed plugin answered VERSION as a runtime would call it. */
  readonly runs: boolean;
}

/**
 * Installs the plugin from `src` into `binDir` and runs it once as a runtime would: a plugin
 * that cannot start breaks every pod on the node. Again after every change, while it fails,
 * and on a full resync once a {@linkcode RECHECK_MS}.
 *
 * @example
 * const plugin = createPluginStep({ src, binDir }, log);
 * await plugin.run(true); // { runs: true }
 */
export function createPluginStep(
  opts: { readonly src: string; readonly binDir: string },
  log: Logger,
  files: InstallFiles = INSTALL_FILES,
  now: () => number = Date.now,
) {
  const dst = join(opts.binDir, PLUGIN_NAME);
  let installed = false;
  let runs = false;
  let checkedAt = 0;
  return {
    async run(full: boolean): Promise<PluginReport> {
      const recheck = full && now() - checkedAt >= RECHECK_MS;
      if (installed && runs && !recheck) return { runs };
      const done = await files.installPlugin(opts.src, opts.binDir);
      if (done.runtime?.copied) {
        log.info("plugin runtime installed", { src: opts.src, dst: done.runtime.path });
      }
      if (done.copied) log.info("plugin installed", { src: opts.src, dst });
      installed = true;
      checkedAt = now();
      const problem = await files.pluginProblem(dst);
      if (problem === undefined) {
        if (!runs) log.info("installed plugin runs", { path: dst });
        runs = true;
        return { runs };
      }
      runs = false;
      return { runs, problem: `The installed plugin does not run: ${problem}` };
    },
  };
}

/** Where the conflist goes and what it says besides the node's podCIDRs. */
export interface ConflistOptions {
  readonly cniConfDir: string;
  readonly cniBinDir: string;
  readonly cniDataDir: string;
  readonly logFile: string;
  /**
   * The admission socket, when the agent admits pods (API mode with NetworkPolicy): written into
   * the conflist, and left out (removed from an existing one) otherwise.
   */
  readonly agentSocket?: string;
}

/**
 * Writes the conflist for this node (its podCIDRs, the MTU `mtuOf` decides, `portmap` when
 * installed), atomically and only when its text changes.
 *
 * @example
 * const conflist = createConflistStep(opts, datapath.mtu, log);
 * await conflist.run(own, false);
 */
export function createConflistStep(
  opts: ConflistOptions,
  mtuOf: (own: NodeInfo, refresh: boolean) => number,
  log: Logger,
  files: InstallFiles = INSTALL_FILES,
) {
  const path = join(opts.cniConfDir, CONFLIST_NAME);
  let mtu: number | undefined;
  let ownKey = "";
  return {
    async run(own: NodeInfo, full: boolean): Promise<StepReport> {
      const key = own.podCIDRs.join(",");
      // The underlay's MTU, less the VXLAN overhead unless every peer is host-gw (datapath.ts).
      mtu = mtuOf(own, mtu === undefined || full || key !== ownKey);
      ownKey = key;
      const text = renderConflist({
        podCIDRs: own.podCIDRs,
        dataDir: opts.cniDataDir,
        logFile: opts.logFile,
        mtu,
        portmap: await files.fileExists(join(opts.cniBinDir, "portmap")),
        ...(opts.agentSocket === undefined ? {} : { agentSocket: opts.agentSocket }),
      });
      if (await files.ensureFileContent(path, text)) {
        log.info("conflist written", {
          path,
          podCIDRs: own.podCIDRs,
          mtu,
          ...(opts.agentSocket === undefined ? {} : { agentSocket: opts.agentSocket }),
        });
      }
      return {};
    },
  };
}
