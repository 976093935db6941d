// podman 4.3 with its CNI backend, private storage and config, run inside a node's namespace.
// Config per notes/real-runtimes.md: runc (crun refuses this hybrid cgroup layout), explicit
// ulimits (podman asks for more than the hard limit here), cgroupfs (no systemd).
import { run, type RunOutput, runOutput } from "../../../lib/process/run.ts";

/** podman with its own root, runroot and containers.conf. */
export interface Podman {
  /** Runs podman in `netns` against the conflists in `netConfDir`; throws on failure. */
  run(netns: string, netConfDir: string, args: readonly string[], stdin?: string): Promise<string>;
  /** Same, returning the output whatever the exit code. */
  output(netns: string, netConfDir: string, args: readonly string[]): Promise<RunOutput>;
}

/** The hard RLIMIT_NOFILE of this process (`ulimit -Hn`), from /proc. */
async function hardNofile(): Promise<string> {
  const limits = await Deno.readTextFile("/proc/self/limits");
  const line = limits.split("\n").find((l) => l.startsWith("Max open files"))!;
  return line.trim().split(/\s+/)[4];
}

/**
 * Writes podman's config under `dir`; plugins come from `cniBinDir`.
 *
 * @example
 * const podman = await setupPodman(`${tmp}/podman`, shimDir);
 * await podman.run(node.ns.path, node.confDir, ["run", "-d", "--network", "mycni", image]);
 */
export async function setupPodman(dir: string, cniBinDir: string): Promise<Podman> {
  for (const d of ["storage", "run", "tmp", "net.d"]) {
    await Deno.mkdir(`${dir}/${d}`, { recursive: true });
  }
  const nofile = await hardNofile();
  const q = JSON.stringify;
  const conf = `[containers]
netns = "bridge"
default_ulimits = [${q(`nofile=${nofile}:${nofile}`)}, "nproc=32768:32768"]
[network]
network_backend = "cni"
cni_plugin_dirs = [${q(cniBinDir)}]
network_config_dir = ${q(`${dir}/net.d`)}
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = ${q(`${dir}/events.log`)}
tmp_dir = ${q(`${dir}/tmp`)}
runtime = "runc"
`;
  await Deno.writeTextFile(`${dir}/containers.conf`, conf);
  // conmon runs `podman container cleanup` with this environment when a container exits.
  const env = { CONTAINERS_CONF: `${dir}/containers.conf` };
  const argv = (netns: string, netConfDir: string, args: readonly string[]) => [
    "nsenter",
    `--net=${netns}`,
    "--",
    "podman",
    "--root",
    `${dir}/storage`,
    "--runroot",
    `${dir}/run`,
    "--storage-driver",
    "overlay",
    "--network-config-dir",
    netConfDir,
    ...args,
  ];
  return {
    run: (netns, netConfDir, args, stdin) => run(argv(netns, netConfDir, args), { env, stdin }),
    output: (netns, netConfDir, args) => runOutput(argv(netns, netConfDir, args), { env }),
  };
}
