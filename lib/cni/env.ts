// The CNI_* environment a runtime sets, validated the way the reference skeleton does.
import { CniError, ErrorCode } from "./errors.ts";

/** The verbs of CNI spec 1.1. */
export type Verb = "ADD" | "DEL" | "CHECK" | "GC" | "STATUS" | "VERSION";

const VERBS: readonly Verb[] = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"];

/** The invocation, as parsed from the environment. */
export interface CniEnv {
  readonly verb: Verb;
  readonly containerId: string;
  /** Empty on DEL when the runtime has no netns any more (containerd's second DEL, ctr). */
  readonly netns: string;
  readonly ifname: string;
  readonly args: ReadonlyMap<string, string>;
  /** Directories searched for delegated plugins (CNI_PATH). */
  readonly path: readonly string[];
}

/**
 * Every environment variable the plugin reads: the runtime's CNI_* and PATH (STATUS looks for
 * tools there). A delegated IPAM plugin inherits the rest of the environment from our process.
 */
export const PLUGIN_ENV: readonly string[] = [
  "CNI_COMMAND",
  "CNI_CONTAINERID",
  "CNI_NETNS",
  "CNI_IFNAME",
  "CNI_ARGS",
  "CNI_PATH",
  "PATH",
];

/**
 * Not CNI: set to "1" by the agent on the VERSION it runs to check the installed plugin (after
 * each install, and every minute), so that this run waits for Deno to store the plugin's V8 code
 * cache (mycni.ts says why a runtime's VERSION does not wait).
 */
export const STORE_CODE_CACHE = "MYCNI_STORE_CODE_CACHE";

// Which variables each verb needs (skel.go's reqForCmd; CNI_NETNS is optional on DEL).
const REQUIRED: Record<Verb, readonly string[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  GC: ["CNI_PATH"],
  STATUS: ["CNI_PATH"],
  VERSION: [],
};

/**
 * What a container ID and a network name may hold: libcni's one pattern for both
 * (pkg/utils ValidateContainerID, ValidateNetworkName).
 */
export const CNI_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;
/**
 * The longest container ID or network name: each names a state file or directory, which past
 * NAME_MAX could never be opened. Real runtimes' IDs are 64 hex characters.
 */
export const MAX_CNI_NAME = 200;

/** Parses CNI_COMMAND; undefined when it is unset (the plugin then prints its usage). */
export function parseVerb(env: Readonly<Record<string, string>>): Verb | undefined {
  const cmd = env.CNI_COMMAND;
  if (cmd === undefined || cmd === "") return undefined;
  if (!(VERBS as readonly string[]).includes(cmd)) {
    throw new CniError(
      ErrorCode.InvalidEnv,
      `Unknown CNI_COMMAND "${cmd.slice(0, 40)}"`,
      `want one of ${VERBS.join(", ")}`,
    );
  }
  return cmd as Verb;
}

/** Validates the environment for `verb`; throws CniError code 4 naming the variable. */
export function parseCniEnv(verb: Verb, env: Readonly<Record<string, string>>): CniEnv {
  // Empty counts as missing, as in skel.go: "required env variables [CNI_CONTAINERID] missing".
  const missing = REQUIRED[verb].filter((k) => env[k] === undefined || env[k] === "");
  if (missing.length) {
    throw new CniError(
      ErrorCode.InvalidEnv,
      `Required env variables [${missing.join(",")}] missing`,
    );
  }
  const needsAttachment = REQUIRED[verb].includes("CNI_CONTAINERID");
  const containerId = env.CNI_CONTAINERID ?? "";
  const ifname = env.CNI_IFNAME ?? "";
  if (needsAttachment) {
    validateContainerId(containerId);
    validateIfname(ifname, "CNI_IFNAME");
  }
  return {
    verb,
    containerId,
    netns: env.CNI_NETNS ?? "",
    ifname,
    args: parseCniArgs(env.CNI_ARGS ?? ""),
    path: (env.CNI_PATH ?? "").split(":").filter((p) => p !== ""),
  };
}

/** Container IDs name state files: only the skeleton's characters, and not too long. */
export function validateContainerId(id: string): void {
  if (id === "") {
    throw new CniError(ErrorCode.InvalidEnv, "Required env variables [CNI_CONTAINERID] missing");
  }
  if (id.length > MAX_CNI_NAME) {
    throw new CniError(
      ErrorCode.InvalidEnv,
      `Invalid containerID: longer than ${MAX_CNI_NAME} characters`,
    );
  }
  if (!CNI_NAME.test(id)) {
    throw new CniError(
      ErrorCode.InvalidEnv,
      `Invalid characters in containerID "${id.slice(0, 64)}"`,
      `want ${CNI_NAME.source}`,
    );
  }
}

/** Interface names: 1-15 characters, no "/", ":" or whitespace, not "." or ".." (kernel rules). */
export function validateIfname(name: string, field: string): void {
  const bad = name === ""
    ? "is empty"
    : name.length > 15
    ? "is longer than 15 characters"
    : name === "." || name === ".."
    ? `is "${name}"`
    : /[/:\s]/.test(name)
    ? 'contains "/", ":" or whitespace'
    : "";
  if (bad) {
    throw new CniError(ErrorCode.InvalidEnv, `Invalid ${field} "${name.slice(0, 40)}": ${bad}`);
  }
}

/**
 * Parses CNI_ARGS (`K=V;K=V`). Unknown keys are kept and ignored by callers, as with
 * `IgnoreUnknown=1`, which every Kubernetes runtime sends.
 */
export function parseCniArgs(text: string): Map<string, string> {
  const args = new Map<string, string>();
  for (const pair of text.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      throw new CniError(
        ErrorCode.InvalidEnv,
        `Invalid CNI_ARGS pair "${pair.slice(0, 60)}"`,
        "want KEY=VALUE;KEY=VALUE",
      );
    }
    args.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return args;
}
