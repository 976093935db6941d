// Installs the plugin binary and its conflist on the host, atomically: a runtime scanning the
// directories mid-install sees the old file or the new one, never half a file.
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { STORE_CODE_CACHE } from "../cni/env.ts";
import { runOutput } from "../process/run.ts";

/** Name of the plugin binary in the CNI bin dir (the conflist's `type`). */
export const PLUGIN_NAME = "mycni";

/**
 * Writes `text` to `path` through a temp file in the same directory and a rename, only when the
 * content differs. Returns whether it wrote.
 *
 * @example
 * await ensureFileContent("/etc/cni/net.d/10-mycni.conflist", conflist);
 */
export async function ensureFileContent(path: string, text: string): Promise<boolean> {
  try {
    if ((await Deno.readTextFile(path)) === text) return false;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(dirname(path), { recursive: true });
  const tmp = tempName(path);
  try {
    await Deno.writeTextFile(tmp, text, { mode: 0o644 });
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  return true;
}

/** Name of the Deno runtime a bundled plugin runs on, installed next to it. */
export const PLUGIN_RUNTIME_NAME = "mycni-deno";

/** What {@linkcode installPlugin} did. */
export interface PluginInstall {
  /** The plugin file was (re)written. */
  readonly copied: boolean;
  /** Bundle mode: the runtime installed next to the plugin, and whether it was (re)written. */
  readonly runtime?: { readonly path: string; readonly copied: boolean };
}

/**
 * Installs the plugin from `src` as `<binDir>/mycni` (temp copy, chmod 0755, rename over) unless
 * the installed file already has the same bytes. A compiled plugin is one self-contained
 * executable. A bundled one (a script whose shebang names the deno that built it, see
 * scripts/build.sh) would break the day that deno moves, so its runtime is installed next to it
 * as `mycni-deno` and the installed script's shebang names that copy: the node then depends on
 * nothing outside `binDir`.
 *
 * @example
 * await installPlugin("/usr/local/bin/mycni", "/opt/cni/bin"); // { copied: true }
 */
export async function installPlugin(src: string, binDir: string): Promise<PluginInstall> {
  const dst = join(binDir, PLUGIN_NAME);
  let want = await Deno.readFile(src);
  let runtime: PluginInstall["runtime"];
  const shebang = parseBundleShebang(want);
  await Deno.mkdir(binDir, { recursive: true });
  if (shebang) {
    const path = join(binDir, PLUGIN_RUNTIME_NAME);
    runtime = { path, copied: await installRuntime(shebang.runtime, path) };
    want = withShebang(want, `#!/usr/bin/env -S ${path} ${shebang.flags}`);
  }
  try {
    const have = await Deno.readFile(dst);
    const mode = (await Deno.stat(dst)).mode ?? 0;
    if (sameBytes(have, want) && (mode & 0o111) !== 0) return { copied: false, runtime };
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await writeExecutable(dst, want);
  return { copied: true, runtime };
}

/**
 * The runtime and flags of a bundled plugin's shebang (`#!/usr/bin/env -S /x/deno run ...`);
 * undefined for anything else (a compiled executable, a test stand-in).
 *
 * @example
 * parseBundleShebang(new TextEncoder().encode("#!/usr/bin/env -S /d/deno run -A\n..."));
 * // { runtime: "/d/deno", flags: "run -A" }
 */
export function parseBundleShebang(
  bytes: Uint8Array,
): { runtime: string; flags: string } | undefined {
  const end = bytes.indexOf(10);
  if (end < 0 || bytes[0] !== 0x23 || bytes[1] !== 0x21) return undefined;
  const line = new TextDecoder().decode(bytes.subarray(0, end));
  const m = /^#!\/usr\/bin\/env -S (\/\S*\/deno[^/\s]*) (run .*)$/.exec(line);
  return m ? { runtime: m[1], flags: m[2] } : undefined;
}

/**
 * Puts the runtime at `dst` unless it is already there (same size and mtime: a copy keeps its
 * source's mtime). A hard link when on the same filesystem (free, and still a file of its own if
 * the source goes), else a copy; either way through a temp name and a rename.
 */
async function installRuntime(src: string, dst: string): Promise<boolean> {
  const from = await Deno.stat(src);
  try {
    const have = await Deno.stat(dst);
    if (have.size === from.size && have.mtime?.getTime() === from.mtime?.getTime()) return false;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const tmp = tempName(dst);
  try {
    await Deno.remove(tmp).catch(() => {});
    try {
      await Deno.link(src, tmp);
    } catch {
      await Deno.copyFile(src, tmp);
      await Deno.chmod(tmp, 0o755);
      if (from.atime && from.mtime) await Deno.utime(tmp, from.atime, from.mtime);
    }
    await Deno.rename(tmp, dst);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  return true;
}

function withShebang(bytes: Uint8Array, line: string): Uint8Array<ArrayBuffer> {
  const rest = bytes.subarray(bytes.indexOf(10));
  const head = new TextEncoder().encode(line);
  const out = new Uint8Array(head.length + rest.length);
  out.set(head);
  out.set(rest, head.length);
  return out;
}

async function writeExecutable(dst: string, bytes: Uint8Array): Promise<void> {
  const tmp = tempName(dst);
  try {
    await Deno.writeFile(tmp, bytes, { mode: 0o755 });
    await Deno.chmod(tmp, 0o755);
    await Deno.rename(tmp, dst);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}

/**
 * Runs the installed plugin the way a runtime does (its path, a minimal environment,
 * `CNI_COMMAND=VERSION`, a config on stdin; plus STORE_CODE_CACHE) and returns why it is
 * unusable, or undefined when it answers with its supported versions.
 *
 * @example
 * await pluginProblem("/opt/cni/bin/mycni"); // undefined on a healthy node
 */
export async function pluginProblem(path: string): Promise<string | undefined> {
  let out;
  try {
    out = await runOutput([path], {
      // STORE_CODE_CACHE: the check right after an install is the run that stores Deno's code
      // cache for the plugin, which every later ADD and DEL loads (later checks find it there).
      env: { CNI_COMMAND: "VERSION", CNI_PATH: dirname(path), [STORE_CODE_CACHE]: "1" },
      clearEnv: true,
      stdin: '{"cniVersion":"1.0.0"}',
      timeoutMs: 10_000,
    });
  } catch (err) {
    return (err as Error).message;
  }
  const said = (out.stdout.trim() || out.stderr.trim()).split("\n").slice(0, 3).join("; ");
  if (out.code !== 0) return `${path} VERSION exited ${out.code}: ${said || "no output"}`;
  try {
    const answer = JSON.parse(out.stdout) as { supportedVersions?: unknown };
    if (Array.isArray(answer.supportedVersions)) return undefined;
  } catch { /* reported below */ }
  return `${path} VERSION did not print supportedVersions: ${said || "no output"}`;
}

/** Removes `path`; already gone is fine. Returns whether it removed something. */
export async function deleteFile(path: string): Promise<boolean> {
  try {
    await Deno.remove(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Whether `path` is a file (the `portmap` probe). */
export async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * Where the plugin to install comes from by default: `mycni` next to the agent. A compiled
 * agent is its own executable; a bundled one is a script run by deno, so its path is the main
 * module's.
 */
export function defaultPluginSource(): string {
  const exec = Deno.execPath();
  const compiled = !/^deno(\.exe)?$/.test(basename(exec));
  if (compiled || !Deno.mainModule.startsWith("file:")) return join(dirname(exec), PLUGIN_NAME);
  return join(dirname(fileURLToPath(Deno.mainModule)), PLUGIN_NAME);
}

function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${Deno.pid}`);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
