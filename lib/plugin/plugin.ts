// The plugin as a function: environment and stdin in, protocol JSON out, exit code back.
// One table maps verbs to handlers; errors become the spec's error JSON in one place.
import { type CniEnv, parseCniEnv, parseVerb, type Verb } from "../cni/env.ts";
import { CniError, ErrorCode, toErrorJson } from "../cni/errors.ts";
import { writeLog } from "./log.ts";
import { decodeStdin, type NetConf, parseNetConf, peekVersion } from "../cni/netconf.ts";
import { formatResult, type Result } from "../cni/result.ts";
import { CURRENT_VERSION, SUPPORTED_VERSIONS, versionAtLeast } from "../cni/version.ts";
import { add } from "./add.ts";
import { check } from "./check.ts";
import { del } from "./del.ts";
import { gc } from "./gc.ts";
import type { Request } from "./request.ts";
import { status } from "./status.ts";

/** The program version, printed with the usage. */
export const PLUGIN_VERSION = "0.1.0";

/** The outside world, injected so tests can drive the plugin without a process. */
export interface PluginIo {
  readonly env: Readonly<Record<string, string>>;
  readonly readStdin: () => Promise<string>;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

type Handler = (req: Request) => Promise<Result | void>;

const VERBS: Record<Exclude<Verb, "VERSION">, { handler: Handler; since: string }> = {
  ADD: { handler: add, since: "0.3.0" },
  DEL: { handler: del, since: "0.3.0" },
  CHECK: { handler: check, since: "0.4.0" },
  GC: { handler: gc, since: "1.1.0" },
  STATUS: { handler: status, since: "1.1.0" },
};

/** Runs one invocation; returns the exit code. */
export async function runPlugin(io: PluginIo): Promise<number> {
  const started = performance.now();
  let version: string = CURRENT_VERSION;
  let conf: NetConf | undefined;
  let logTo: { file: string; level: NetConf["logLevel"] } | undefined;
  const log: Record<string, unknown> = {};
  let verb: Verb | undefined;
  try {
    verb = parseVerb(io.env);
    if (verb === undefined) {
      io.err(usage());
      return 0;
    }
    if (verb === "VERSION") {
      io.out(JSON.stringify(await versionInfo(io)));
      return 0;
    }
    const env = parseCniEnv(verb, io.env);
    Object.assign(log, logFields(env));
    const json = decodeStdin(await readStdin(io));
    version = peekVersion(json) ?? version;
    logTo = peekLogFile(json);
    conf = parseNetConf(json);
    logTo = { file: conf.logFile, level: conf.logLevel };
    const { handler, since } = VERBS[verb];
    if (!versionAtLeast(conf.cniVersion, since)) {
      throw new CniError(
        ErrorCode.IncompatibleVersion,
        `config version ${conf.cniVersion} does not allow ${verb}`,
        `${verb} needs ${since} or newer`,
      );
    }
    const result = await handler({ env, conf, rawEnv: io.env, log });
    if (result) io.out(JSON.stringify(formatResult(result, conf.cniVersion)));
    outcome(logTo, "info", verb, log, started);
    return 0;
  } catch (err) {
    const json = toErrorJson(err, version);
    io.out(JSON.stringify(json));
    if (logTo) {
      outcome(logTo, "error", verb, {
        ...log,
        error: json.msg,
        code: json.code,
        details: json.details,
      }, started);
    }
    return 1;
  }
}

function logFields(env: CniEnv): Record<string, unknown> {
  const ns = env.args.get("K8S_POD_NAMESPACE"), pod = env.args.get("K8S_POD_NAME");
  return {
    ...(env.containerId ? { containerId: env.containerId, ifname: env.ifname } : {}),
    ...(env.netns ? { netns: env.netns } : {}),
    ...(pod ? { pod: ns ? `${ns}/${pod}` : pod } : {}),
  };
}

function outcome(
  to: { file: string; level: NetConf["logLevel"] },
  level: "info" | "error",
  verb: Verb | undefined,
  fields: Record<string, unknown>,
  started: number,
): void {
  const ms = Math.round((performance.now() - started) * 10) / 10;
  writeLog(to.file, to.level, level, {
    verb,
    ...fields,
    durationMs: ms,
  });
}

async function readStdin(io: PluginIo): Promise<string> {
  try {
    return await io.readStdin();
  } catch (err) {
    throw new CniError(ErrorCode.IoFailure, `Cannot read stdin: ${(err as Error).message}`);
  }
}

/** A config too broken to parse may still say where to log. */
function peekLogFile(json: unknown): { file: string; level: "info" } | undefined {
  const file = typeof json === "object" && json !== null
    ? (json as { logFile?: unknown }).logFile
    : undefined;
  return typeof file === "string" && file !== "" ? { file, level: "info" } : undefined;
}

async function versionInfo(io: PluginIo) {
  // The spec echoes the request's cniVersion; podman sends `dummy` env and a tiny stdin.
  let asked: string | undefined;
  try {
    asked = peekVersion(JSON.parse(await io.readStdin()));
  } catch { /* no or bad stdin: answer with ours */ }
  return { cniVersion: asked ?? CURRENT_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] };
}

function usage(): string {
  return `CNI mycni plugin v${PLUGIN_VERSION}\nCNI protocol versions supported: ${
    SUPPORTED_VERSIONS.join(", ")
  }\n` +
    "Run by a container runtime with CNI_COMMAND (ADD, DEL, CHECK, GC, STATUS, VERSION) and the network configuration on stdin.";
}
