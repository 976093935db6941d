// The plugin's network configuration (DESIGN.md "Plugin contract — config"), parsed once at the
// boundary: every wrong type is error 7 naming the field; unknown fields are ignored (spec).
import { type Cidr, cidrsOverlap, formatCidr, isTooSmall, parseCidr } from "../ip/cidr.ts";
import { CniError, ErrorCode } from "./errors.ts";
import { parseResult, type Result } from "./result.ts";
import { type CniVersion, isSupportedVersion, SUPPORTED_VERSIONS } from "./version.ts";
import { CNI_NAME, MAX_CNI_NAME, validateContainerId, validateIfname } from "./env.ts";

/** Log levels, least to most severe. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = typeof LOG_LEVELS[number];

/** One (container, interface) pair the runtime still uses (GC's valid-attachments). */
export interface Attachment {
  readonly containerID: string;
  readonly ifname: string;
}

/** The validated configuration. */
export interface NetConf {
  readonly cniVersion: CniVersion;
  readonly name: string;
  readonly type: string;
  readonly bridge: string;
  /** The node's pod networks, at most one per family; empty only with a delegated `ipam`. */
  readonly podCIDRs: readonly Cidr[];
  /** Present when IPAM is delegated to another plugin. */
  readonly ipam?: { readonly type: string };
  readonly dataDir: string;
  readonly mtu?: number;
  readonly hairpinMode: boolean;
  readonly ipMasq: boolean;
  readonly logFile: string;
  readonly logLevel: LogLevel;
  /**
   * The node agent's admission socket: ADD asks it before returning, DEL tells it, STATUS pings
   * it (DESIGN.md "Pod lifecycle"). Absent: the plugin asks nobody.
   */
  readonly agentSocket?: string;
  readonly prevResult?: Result;
  /** GC only: what the runtime still uses. */
  readonly validAttachments?: readonly Attachment[];
  /** The request exactly as received, passed unchanged to a delegated IPAM plugin. */
  readonly raw: Readonly<Record<string, unknown>>;
}

// Defaults the agent repeats: its conflist names the bridge, and its flags default to these.
/** `bridge` when the config names none. */
export const DEFAULT_BRIDGE = "cni0";
/** `dataDir` when the config names none. */
export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";
/** `logFile` when the config names none. */
export const DEFAULT_LOG_FILE = "/var/log/mycni.log";

/** Reads the version before anything else, so even a config error answers in that version. */
export function peekVersion(json: unknown): string | undefined {
  if (typeof json === "object" && json !== null && "cniVersion" in json) {
    const v = (json as { cniVersion: unknown }).cniVersion;
    if (isSupportedVersion(v)) return v;
  }
  return undefined;
}

/** Parses stdin text: not JSON is error 6. */
export function decodeStdin(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CniError(
      ErrorCode.DecodeFailure,
      "Cannot decode network configuration: not JSON",
      (err as Error).message,
    );
  }
}

/**
 * Validates a decoded network configuration.
 *
 * @example
 * parseNetConf({ cniVersion: "1.1.0", name: "mycni", type: "mycni", podcidr: "10.244.1.0/24" });
 */
export function parseNetConf(json: unknown): NetConf {
  const o = field.object(json, "network configuration");
  const cniVersion = o.cniVersion === undefined ? "0.1.0" : o.cniVersion;
  if (!isSupportedVersion(cniVersion)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      "Incompatible CNI versions",
      `config is ${JSON.stringify(cniVersion)}, plugin supports ${
        JSON.stringify(SUPPORTED_VERSIONS)
      }`,
    );
  }
  const name = field.string(o, "name", undefined);
  if (!CNI_NAME.test(name)) {
    throw invalid("name", `"${name.slice(0, 64)}" must match ${CNI_NAME.source}`);
  }
  // The name is a directory under dataDir: past NAME_MAX the state could never be opened.
  if (name.length > MAX_CNI_NAME) {
    throw invalid("name", `"${name.slice(0, 64)}..." is longer than ${MAX_CNI_NAME} characters`);
  }
  const bridge = field.string(o, "bridge", DEFAULT_BRIDGE);
  try {
    validateIfname(bridge, "bridge");
  } catch (err) {
    throw invalid("bridge", (err as Error).message);
  }
  const ipam = parseIpam(o.ipam);
  const podCIDRs = parsePodCidrs(o, ipam !== undefined);
  const mtu = o.mtu === undefined ? undefined : field.integer(o, "mtu", 68, 65535);
  const logLevel = field.string(o, "logLevel", "info");
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw invalid("logLevel", `"${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  }
  return {
    cniVersion,
    name,
    type: field.string(o, "type", "mycni"),
    bridge,
    podCIDRs,
    ipam,
    dataDir: field.string(o, "dataDir", DEFAULT_DATA_DIR),
    mtu,
    hairpinMode: field.boolean(o, "hairpinMode", true),
    ipMasq: field.boolean(o, "ipMasq", false),
    logFile: field.string(o, "logFile", DEFAULT_LOG_FILE),
    logLevel: logLevel as LogLevel,
    ...parseAgentSocket(o),
    prevResult: o.prevResult === undefined || o.prevResult === null
      ? undefined
      : parseResult(o.prevResult, "prevResult"),
    validAttachments: parseAttachments(o),
    raw: o,
  };
}

function parseIpam(json: unknown): { type: string } | undefined {
  if (json === undefined || json === null) return undefined;
  const o = field.object(json, "ipam");
  const type = field.string(o, "type", undefined, "ipam.type");
  if (type === "" || type.includes("/") || type === "." || type === "..") {
    throw invalid("ipam.type", `"${type}" is not a plugin name`);
  }
  return { type };
}

function parsePodCidrs(o: Record<string, unknown>, delegated: boolean): Cidr[] {
  const texts: [string, string][] = [];
  if (o.podcidr !== undefined) texts.push(["podcidr", field.string(o, "podcidr", undefined)]);
  if (o.podCIDRs !== undefined) {
    const list = o.podCIDRs;
    if (!Array.isArray(list)) throw invalid("podCIDRs", "want a list of CIDR strings");
    list.forEach((t, i) => {
      if (typeof t !== "string") throw invalid(`podCIDRs[${i}]`, "want a CIDR string");
      texts.push([`podCIDRs[${i}]`, t]);
    });
  }
  const cidrs: Cidr[] = [];
  for (const [name, text] of texts) {
    let cidr: Cidr;
    try {
      cidr = parseCidr(text, { strict: true });
    } catch (err) {
      throw invalid(name, (err as Error).message);
    }
    if (isTooSmall(cidr)) throw invalid(name, `network ${text} is too small to allocate from`);
    const same = cidrs.find((c) => c.family === cidr.family);
    if (same && formatCidr(same) === formatCidr(cidr)) continue; // podcidr repeated in podCIDRs
    if (same && cidrsOverlap(same, cidr)) {
      throw invalid(name, `${text} overlaps ${formatCidr(same)}`);
    }
    if (same) {
      throw invalid(name, `at most one IPv${cidr.family} CIDR (already have ${formatCidr(same)})`);
    }
    cidrs.push(cidr);
  }
  if (cidrs.length === 0 && !delegated) {
    throw invalid("podCIDRs", "podcidr or podCIDRs is required when ipam is not set");
  }
  return cidrs;
}

// sun_path holds 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH = 107;

function parseAgentSocket(o: Record<string, unknown>): { agentSocket?: string } {
  if (o.agentSocket === undefined) return {};
  const path = field.string(o, "agentSocket", undefined);
  // The runtime's working directory is nobody's business: a relative path would name a
  // different socket for each runtime.
  if (!path.startsWith("/")) throw invalid("agentSocket", `"${path.slice(0, 64)}" is not absolute`);
  if (new TextEncoder().encode(path).length > MAX_SOCKET_PATH) {
    throw invalid("agentSocket", `longer than ${MAX_SOCKET_PATH} bytes (a unix socket's limit)`);
  }
  return { agentSocket: path };
}

function parseAttachments(o: Record<string, unknown>): Attachment[] | undefined {
  // The spec names it cni.dev/valid-attachments; libcni also sends cni.dev/attachments (cni#1101).
  const key = o["cni.dev/valid-attachments"] !== undefined
    ? "cni.dev/valid-attachments"
    : "cni.dev/attachments";
  const list = o[key];
  if (list === undefined || list === null) return undefined;
  if (!Array.isArray(list)) throw invalid(key, "want a list of {containerID, ifname}");
  return list.map((x, i) => {
    const a = field.object(x, `${key}[${i}]`);
    const containerID = field.string(a, "containerID", undefined, `${key}[${i}].containerID`);
    const ifname = field.string(a, "ifname", undefined, `${key}[${i}].ifname`);
    try {
      validateContainerId(containerID);
      validateIfname(ifname, "ifname");
    } catch (err) {
      throw invalid(`${key}[${i}]`, (err as Error).message);
    }
    return { containerID, ifname };
  });
}

function invalid(name: string, why: string): CniError {
  return new CniError(
    ErrorCode.InvalidConfig,
    `Invalid network configuration field "${name}": ${why}`,
  );
}

const field = {
  object(v: unknown, name: string): Record<string, unknown> {
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw invalid(name, "want a JSON object");
    }
    return v as Record<string, unknown>;
  },
  string(o: Record<string, unknown>, key: string, dflt: string | undefined, name = key): string {
    const v = o[key];
    if (v === undefined && dflt !== undefined) return dflt;
    if (v === undefined) throw invalid(name, "is required");
    if (typeof v !== "string") {
      throw invalid(name, `want a string, got ${JSON.stringify(v)?.slice(0, 40)}`);
    }
    return v;
  },
  boolean(o: Record<string, unknown>, key: string, dflt: boolean): boolean {
    const v = o[key];
    if (v === undefined) return dflt;
    if (typeof v !== "boolean") {
      throw invalid(key, `want true or false, got ${JSON.stringify(v)?.slice(0, 40)}`);
    }
    return v;
  },
  integer(o: Record<string, unknown>, key: string, min: number, max: number): number {
    const v = o[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      throw invalid(
        key,
        `want an integer from ${min} to ${max}, got ${JSON.stringify(v)?.slice(0, 40)}`,
      );
    }
    return v;
  },
};
