// Installs the plugin binary and its conflist on the host, atomically: a runtime scanning the
// directories mid-install sees the old file or the new one, never half a file.
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

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

/**
 * Copies the plugin from `src` to `<binDir>/mycni` (temp copy, chmod 0755, rename over) unless
 * the installed file already has the same bytes. Returns whether it copied.
 */
export async function installPlugin(src: string, binDir: string): Promise<boolean> {
  const dst = join(binDir, PLUGIN_NAME);
  const want = await Deno.readFile(src);
  try {
    const have = await Deno.readFile(dst);
    const mode = (await Deno.stat(dst)).mode ?? 0;
    if (sameBytes(have, want) && (mode & 0o111) !== 0) return false;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(binDir, { recursive: true });
  const tmp = tempName(dst);
  try {
    await Deno.writeFile(tmp, want, { mode: 0o755 });
    await Deno.chmod(tmp, 0o755);
    await Deno.rename(tmp, dst);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  return true;
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
