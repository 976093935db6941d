// A CNI bin dir whose every plugin is a logging shim in front of the real binary, so the suite
// sees exactly which calls a runtime made (verb, netns, prevResult, CNI_ARGS) and how long each took.

/** One plugin invocation as the shim logged it. */
export interface CniCall {
  readonly plugin: string;
  readonly verb: string;
  readonly code: number;
  readonly ms: number;
  readonly ifname: string;
  readonly netns: string;
  readonly containerId: string;
  readonly prevResult: boolean;
  readonly args: string;
}

// Generated, not hand-run: the runtime execs it with the CNI env and config on stdin.
const SHIM = `#!/bin/sh
# mycni interop logging shim: runs the real plugin, logs one tab-separated line per call.
stdin=$(cat)
t0=$(date +%s%N)
out=$(printf '%s' "$stdin" | "$MCI_REAL")
rc=$?
t1=$(date +%s%N)
case $stdin in *'"prevResult"'*) prev=1 ;; *) prev=0 ;; esac
printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' "$MCI_NAME" "$CNI_COMMAND" "$rc" \\
  "$(( (t1 - t0) / 1000000 ))" "$CNI_IFNAME" "$CNI_NETNS" "$CNI_CONTAINERID" "$prev" "$CNI_ARGS" >>"$MCI_LOG"
[ -n "$out" ] && printf '%s\\n' "$out"
exit $rc
`;

/**
 * Fills `dir` with a shim per plugin: `plugins` maps a plugin type to its real binary.
 *
 * @example
 * await installShims(bin, log, { loopback: "/usr/lib/cni/loopback", mycni: "/work/main/bin/mycni" });
 */
export async function installShims(
  dir: string,
  log: string,
  plugins: Readonly<Record<string, string>>,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, real] of Object.entries(plugins)) {
    const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
    const head = `#!/bin/sh\nMCI_REAL=${q(real)} MCI_NAME=${q(name)} MCI_LOG=${
      q(log)
    }\nexport MCI_REAL MCI_NAME MCI_LOG\n`;
    await Deno.writeTextFile(`${dir}/${name}`, head + SHIM.replace("#!/bin/sh\n", ""), {
      mode: 0o755,
    });
  }
}

/** The reference plugins the suite chains with, from Debian's containernetworking-plugins. */
export function referencePlugins(): Record<string, string> {
  const names = ["loopback", "bridge", "host-local", "portmap", "bandwidth", "tuning"];
  return Object.fromEntries(names.map((n) => [n, `/usr/lib/cni/${n}`]));
}

/** Reads the calls logged since byte `from` (use the log's size before a scenario). */
export async function readCalls(log: string, from = 0): Promise<CniCall[]> {
  let text = "";
  try {
    text = new TextDecoder().decode((await Deno.readFile(log)).subarray(from));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return text.split("\n").filter((l) => l).map((line) => {
    const [plugin, verb, code, ms, ifname, netns, containerId, prev, args] = line.split("\t");
    return {
      plugin,
      verb,
      code: Number(code),
      ms: Number(ms),
      ifname,
      netns,
      containerId,
      prevResult: prev === "1",
      args: args ?? "",
    };
  });
}

/** Current size of the log: the `from` for the next {@linkcode readCalls}. */
export async function logSize(log: string): Promise<number> {
  try {
    return (await Deno.stat(log)).size;
  } catch {
    return 0;
  }
}

/** One line per call: `DEL mycni eth0 netns=/var/run/netns/cni-… prev=yes rc=0 35ms`. */
export function formatCalls(calls: readonly CniCall[]): string[] {
  return calls.map((c) =>
    `${c.verb.padEnd(7)} ${c.plugin.padEnd(10)} ${c.ifname.padEnd(5)} netns=${
      c.netns === "" ? '""' : c.netns.replace(/[0-9a-f-]{20,}/, "<id>")
    } prev=${c.prevResult ? "yes" : "no"} rc=${c.code} ${c.ms}ms`
  );
}
