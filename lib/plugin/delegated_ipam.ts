// Delegated IPAM, as the reference bridge does it: exec the plugin named by ipam.type from
// CNI_PATH with the same environment and the full config; forward its stderr and its errors.
// The plugin's, not lib/ipam's: IPAM itself spawns no process (DESIGN.md "Layout").
import { CniError, ErrorCode } from "../cni/errors.ts";
import type { Attachment, NetConf } from "../cni/netconf.ts";
import { parseResult, type Result } from "../cni/result.ts";
import { versionAtLeast } from "../cni/version.ts";
import { runOutput } from "../process/run.ts";
import type { Ipam } from "../ipam/ipam.ts";

/** IPAM delegated to the plugin `conf.ipam.type`, found in `cniPath`. */
export function delegatedIpam(
  conf: NetConf,
  env: Readonly<Record<string, string>>,
  cniPath: readonly string[],
): Ipam {
  const type = conf.ipam!.type;
  const exec = (verb: string, extra: Record<string, unknown> = {}) =>
    execPlugin(type, cniPath, verb, { ...env, CNI_COMMAND: verb }, { ...conf.raw, ...extra });
  return {
    async add(): Promise<Result> {
      const out = await exec("ADD");
      const result = parseResult(JSON.parse(out), `${type} result`);
      if (!result.ips?.length) {
        throw new CniError(ErrorCode.Internal, `IPAM plugin ${type} returned no IP addresses`);
      }
      return result;
    },
    async del(): Promise<void> {
      await exec("DEL");
    },
    held(): Promise<string[]> {
      // Only the runtime knows what the delegated plugin gave: prevResult, when it is sent.
      return Promise.resolve(
        (conf.prevResult?.ips ?? []).map((i) => i.address.slice(0, i.address.indexOf("/"))),
      );
    },
    async check(): Promise<void> {
      await exec("CHECK");
    },
    async gc(valid: readonly Attachment[]): Promise<Attachment[]> {
      // The spec: GC MUST be forwarded to delegated plugins (which may not implement it).
      await exec("GC", { "cni.dev/valid-attachments": valid });
      return [];
    },
    async status(): Promise<void> {
      if (!versionAtLeast(conf.cniVersion, "1.1.0")) return;
      try {
        await exec("STATUS");
      } catch (err) {
        throw new CniError(
          ErrorCode.NotAvailable,
          `IPAM plugin ${type} is not available`,
          (err as Error).message,
        );
      }
    },
  };
}

async function execPlugin(
  type: string,
  cniPath: readonly string[],
  verb: string,
  env: Record<string, string>,
  conf: Record<string, unknown>,
): Promise<string> {
  const path = await findPlugin(type, cniPath);
  const out = await runOutput([path], { stdin: JSON.stringify(conf), env });
  if (out.stderr) await Deno.stderr.write(new TextEncoder().encode(out.stderr));
  if (out.code === 0) return out.stdout;
  let parsed: { code?: unknown; msg?: unknown; details?: unknown } = {};
  try {
    parsed = JSON.parse(out.stdout);
  } catch { /* not error JSON: report what it printed */ }
  const code = typeof parsed.code === "number" ? parsed.code : ErrorCode.Internal;
  const msg = typeof parsed.msg === "string"
    ? parsed.msg
    : (out.stdout || out.stderr).trim().slice(0, 300);
  throw new CniError(
    code,
    `IPAM plugin ${type} ${verb} failed: ${msg}`,
    typeof parsed.details === "string" ? parsed.details : "",
  );
}

async function findPlugin(type: string, cniPath: readonly string[]): Promise<string> {
  for (const dir of cniPath) {
    const path = `${dir}/${type}`;
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch { /* try the next directory */ }
  }
  throw new CniError(
    ErrorCode.InvalidConfig,
    `Cannot find IPAM plugin "${type}" in CNI_PATH ${cniPath.join(":")}`,
  );
}
