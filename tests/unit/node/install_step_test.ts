import { deepStrictEqual as assertEquals } from "node:assert/strict";
import type { NodeInfo } from "../../../lib/kube/node.ts";
import {
  createConflistStep,
  createPluginStep,
  type InstallFiles,
  RECHECK_MS,
} from "../../../lib/node/install_step.ts";
import { fakeLog } from "./fake_log.ts";
import { parseAgentArgs } from "../../../lib/node/options.ts";
import { conflistOptions } from "../../../lib/node/sync.ts";

/** Files in memory: what was installed and written, and what the installed plugin says. */
function fakeFiles() {
  const f = {
    calls: [] as string[],
    written: new Map<string, string>(),
    /** The plugin's answer to VERSION: undefined when it runs. */
    problem: undefined as string | undefined,
    /** The source changed since the last install. */
    newSource: true,
    portmap: false,
    files: undefined as unknown as InstallFiles,
  };
  f.files = {
    installPlugin(src, binDir) {
      f.calls.push(`install ${src} ${binDir}`);
      const copied = f.newSource;
      f.newSource = false;
      return Promise.resolve({ copied });
    },
    pluginProblem(path) {
      f.calls.push(`check ${path}`);
      return Promise.resolve(f.problem);
    },
    ensureFileContent(path, text) {
      const changed = f.written.get(path) !== text;
      f.written.set(path, text);
      return Promise.resolve(changed);
    },
    fileExists: (path) => Promise.resolve(f.portmap && path.endsWith("/portmap")),
  };
  return f;
}

Deno.test("createPluginStep() installs and runs the plugin once, then again only on a periodic re-check", async () => {
  const f = fakeFiles();
  const log = fakeLog();
  let now = 1_000_000;
  const step = createPluginStep(
    { src: "/src/mycni", binDir: "/opt/cni/bin" },
    log,
    f.files,
    () => now,
  );
  assertEquals(await step.run(true), { runs: true });
  assertEquals(f.calls, ["install /src/mycni /opt/cni/bin", "check /opt/cni/bin/mycni"]);
  assertEquals(log.all.map((l) => l.msg), ["plugin installed", "installed plugin runs"]);
  assertEquals(await step.run(true), { runs: true });
  assertEquals(await step.run(false), { runs: true });
  assertEquals(f.calls.length, 2, "checked again before the re-check period");
  now += RECHECK_MS;
  assertEquals(await step.run(false), { runs: true });
  assertEquals(f.calls.length, 2, "a run that is not full re-checked");
  assertEquals(await step.run(true), { runs: true });
  assertEquals(f.calls.length, 4);
  assertEquals(log.all.length, 2, "nothing new to say about a plugin that still runs");
});

Deno.test("createPluginStep() reports a plugin that does not run, and checks it on every run until it does", async () => {
  const f = fakeFiles();
  const log = fakeLog();
  const step = createPluginStep({ src: "/src/mycni", binDir: "/bin" }, log, f.files);
  f.problem = "/bin/mycni VERSION exited 1: cannot load libc";
  assertEquals(await step.run(false), {
    runs: false,
    problem: "The installed plugin does not run: /bin/mycni VERSION exited 1: cannot load libc",
  });
  assertEquals((await step.run(false)).runs, false);
  assertEquals(f.calls.filter((c) => c.startsWith("check")).length, 2);
  f.problem = undefined;
  assertEquals(await step.run(false), { runs: true });
  assertEquals(log.lines("installed plugin runs").length, 1);
});

Deno.test("createConflistStep() writes the conflist when its content changes, with the decided MTU", async () => {
  const f = fakeFiles();
  const log = fakeLog();
  const refreshes: boolean[] = [];
  const step = createConflistStep(
    { cniConfDir: "/etc/cni/net.d", cniBinDir: "/opt/cni/bin", cniDataDir: "/d", logFile: "/l" },
    (_own, refresh) => (refreshes.push(refresh), 1450),
    log,
    f.files,
  );
  const own: NodeInfo = { name: "n1", ips: ["192.0.2.11"], podCIDRs: ["10.244.1.0/24"] };
  await step.run(own, false);
  await step.run(own, false);
  await step.run(own, true);
  assertEquals(refreshes, [true, false, true], "the MTU is decided again on full resyncs");
  assertEquals(log.lines("conflist written").length, 1);
  const text = f.written.get("/etc/cni/net.d/10-mycni.conflist")!;
  assertEquals(JSON.parse(text).plugins[0].mtu, 1450);
  assertEquals(JSON.parse(text).plugins.length, 1);
  f.portmap = true;
  await step.run({ ...own, podCIDRs: ["10.244.9.0/24"] }, false);
  assertEquals(refreshes.at(-1), true, "a new podCIDR decides the MTU again");
  const again = JSON.parse(f.written.get("/etc/cni/net.d/10-mycni.conflist")!);
  assertEquals(again.plugins.map((p: { type: string }) => p.type), ["mycni", "portmap"]);
  assertEquals(log.lines("conflist written").length, 2);
});

Deno.test("conflistOptions() names the admission socket only with policy; the step then removes it", async () => {
  const opts = parseAgentArgs(
    ["--node-name", "n1", "--kube-api", "http://127.0.0.1:1", "--cni-conf-dir", "/c"],
    {},
  );
  const f = fakeFiles();
  const written = async (policy: boolean) => {
    const step = createConflistStep(conflistOptions(opts, policy), () => 1500, fakeLog(), f.files);
    await step.run({ name: "n1", ips: [], podCIDRs: ["10.244.1.0/24"] }, false);
    return JSON.parse(f.written.get("/c/10-mycni.conflist")!).plugins[0];
  };
  assertEquals((await written(true)).agentSocket, "/run/mycni/agent.sock");
  assertEquals("agentSocket" in (await written(false)), false, "policy off kept the socket");
});
