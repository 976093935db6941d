// The admission protocol between the plugin and the node agent (DESIGN.md "Pod lifecycle"), on
// the agent's unix socket: one connection per request, one JSON object per line each way, the
// plugin's request first, the agent's answer last. Both sides import this file (lib/node may
// import lib/plugin; this file imports only lib/ip and lib/cni, nothing that touches the kernel).
//
//   plugin -> agent  {"version":1,"kind":"admit","containerId":"c1","ifname":"eth0",
//                     "pod":{"namespace":"default","name":"web-0"},"ips":["10.244.1.5","fd00::5"]}
//                    {"version":1,"kind":"release","containerId":"c1","ifname":"eth0",
//                     "ips":["10.244.1.5"]}
//                    {"version":1,"kind":"ping"}
//   agent -> plugin  {"version":1,"ok":true}
//                    {"version":1,"ok":false,"error":"why"}
//
// `pod` is absent when CNI_ARGS lacks K8S_POD_NAMESPACE or K8S_POD_NAME (the agent admits such a
// pod isolated); `ips` are the attachment's addresses in canonical text, without prefix. Fields
// this version does not know are ignored, so a newer peer can add some.
import { validateContainerId, validateIfname } from "../cni/env.ts";
import { formatIp, parseIp } from "../ip/cidr.ts";

/** The version this code speaks; a request or answer with another is refused. */
export const ADMISSION_VERSION = 1;

/**
 * How long ADD waits for the agent's answer, connect included. It must exceed the agent's bounded
 * wait for a Pod object it has not seen yet plus the kernel write (the agent's wait is meant to be
 * ~2 s), and stay well under what runtimes allow a whole ADD (minutes).
 */
export const ADMIT_TIMEOUT_MS = 5000;

/** How long DEL waits for the agent to acknowledge a release: DEL never fails on it. */
export const RELEASE_TIMEOUT_MS = 1000;

/** How long STATUS waits for the agent's answer to a ping. */
export const PING_TIMEOUT_MS = 2000;

/** The longest line either side reads: requests are a few hundred bytes. */
export const MAX_MESSAGE_BYTES = 16 * 1024;

/** The Kubernetes Pod an attachment belongs to, from CNI_ARGS. */
export interface PodRef {
  readonly namespace: string;
  readonly name: string;
}

/** ADD: bind these addresses to this pod, enforce its policy, answer when the kernel has it. */
export interface AdmitRequest {
  readonly version: typeof ADMISSION_VERSION;
  readonly kind: "admit";
  readonly containerId: string;
  readonly ifname: string;
  readonly pod?: PodRef;
  /** Canonical addresses (no prefix), at least one. */
  readonly ips: readonly string[];
}

/**
 * DEL: the attachment is gone; its addresses leave every set and map, and their conntrack
 * entries go (the agent answers once both are done). `ips`: what IPAM held for it, when DEL
 * could read that (the agent removes their entries even when it had no binding for them).
 */
export interface ReleaseRequest {
  readonly version: typeof ADMISSION_VERSION;
  readonly kind: "release";
  readonly containerId: string;
  readonly ifname: string;
  readonly pod?: PodRef;
  readonly ips?: readonly string[];
}

/** STATUS: is the agent there and serving? */
export interface PingRequest {
  readonly version: typeof ADMISSION_VERSION;
  readonly kind: "ping";
}

/** Anything the plugin sends. */
export type AdmissionRequest = AdmitRequest | ReleaseRequest | PingRequest;

/** What the agent answers: done, or why not. */
export type AdmissionAnswer =
  | { readonly version: typeof ADMISSION_VERSION; readonly ok: true }
  | { readonly version: typeof ADMISSION_VERSION; readonly ok: false; readonly error: string };

/** A message that is not what the protocol says; the message names the field. */
export class AdmissionProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AdmissionProtocolError";
  }
}

// Pod names are DNS subdomains, namespaces DNS labels (both lower case, at most 253 and 63
// characters): checked so that "namespace/name" keys cannot be forged with a "/".
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// One address per family with our IPAM; a delegated one may hand out a few more.
const MAX_IPS = 8;

/** One message as it goes on the wire: JSON and a newline. */
export function formatMessage(message: AdmissionRequest | AdmissionAnswer): string {
  return JSON.stringify(message) + "\n";
}

/** What {@linkcode readMessageLine} and {@linkcode writeMessage} need of a connection. */
export interface MessageConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Reads one line (without its newline), or undefined when the peer closes before sending a whole
 * one. Throws {@linkcode AdmissionProtocolError} past {@linkcode MAX_MESSAGE_BYTES}.
 *
 * @example
 * const line = await readMessageLine(conn);
 */
export async function readMessageLine(conn: MessageConn): Promise<string | undefined> {
  const buf = new Uint8Array(MAX_MESSAGE_BYTES);
  for (let used = 0;;) {
    const n = await conn.read(buf.subarray(used));
    if (n === null) return undefined;
    const line = lineIn(buf, used, n);
    if (line !== undefined) return line;
    used += n;
  }
}

/**
 * {@linkcode readMessageLine} for a reader that returns at once (the plugin's socket,
 * lib/sys/unix_socket.ts): `read(into)` fills the start of `into` and returns the count, 0 when
 * the peer has closed.
 *
 * @example
 * const line = readMessageLineSync((into) => stream.receive(into, deadline));
 */
export function readMessageLineSync(read: (into: Uint8Array) => number): string | undefined {
  const buf = new Uint8Array(MAX_MESSAGE_BYTES);
  for (let used = 0;;) {
    const n = read(buf.subarray(used));
    if (n === 0) return undefined;
    const line = lineIn(buf, used, n);
    if (line !== undefined) return line;
    used += n;
  }
}

/** The line in `buf` once the `n` bytes read at `used` end it; throws when `buf` is full. */
function lineIn(buf: Uint8Array, used: number, n: number): string | undefined {
  const end = buf.subarray(used, used + n).indexOf(0x0a);
  if (end >= 0) return decoder.decode(buf.subarray(0, used + end));
  if (used + n === buf.length) {
    throw new AdmissionProtocolError(`Admission message longer than ${MAX_MESSAGE_BYTES} bytes`);
  }
  return undefined;
}

/** Writes one message whole. */
export async function writeMessage(
  conn: MessageConn,
  message: AdmissionRequest | AdmissionAnswer,
): Promise<void> {
  const bytes = encoder.encode(formatMessage(message));
  for (let rest = bytes; rest.length > 0;) rest = rest.subarray(await conn.write(rest));
}

/**
 * Parses and validates one request line (the agent's side). Throws
 * {@linkcode AdmissionProtocolError} naming the field.
 *
 * @example
 * parseAdmissionRequest('{"version":1,"kind":"ping"}'); // { version: 1, kind: "ping" }
 */
export function parseAdmissionRequest(line: string): AdmissionRequest {
  const o = decode(line, "request");
  const kind = o.kind;
  switch (kind) {
    case "ping":
      return { version: ADMISSION_VERSION, kind };
    case "admit":
      return {
        version: ADMISSION_VERSION,
        kind,
        ...attachment(o),
        ...podOf(o),
        ips: addresses(o.ips),
      };
    case "release": {
      const ips = o.ips === undefined || (Array.isArray(o.ips) && o.ips.length === 0)
        ? {}
        : { ips: addresses(o.ips) };
      return { version: ADMISSION_VERSION, kind, ...attachment(o), ...podOf(o), ...ips };
    }
    default:
      throw bad("kind", `want "admit", "release" or "ping", got ${show(kind)}`);
  }
}

/**
 * Parses and validates one answer line (the plugin's side). Throws
 * {@linkcode AdmissionProtocolError} naming the field.
 *
 * @example
 * parseAdmissionAnswer('{"version":1,"ok":false,"error":"no podCIDR"}');
 */
export function parseAdmissionAnswer(line: string): AdmissionAnswer {
  const o = decode(line, "answer");
  if (o.ok === true) return { version: ADMISSION_VERSION, ok: true };
  if (o.ok !== false) throw bad("ok", `want true or false, got ${show(o.ok)}`);
  if (typeof o.error !== "string" || o.error === "") {
    throw bad("error", `want a non-empty string with ok false, got ${show(o.error)}`);
  }
  return { version: ADMISSION_VERSION, ok: false, error: o.error };
}

function decode(line: string, what: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    throw new AdmissionProtocolError(`Admission ${what} is not JSON: ${show(line)}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new AdmissionProtocolError(`Admission ${what} is not a JSON object: ${show(line)}`);
  }
  const o = json as Record<string, unknown>;
  if (o.version !== ADMISSION_VERSION) {
    throw bad("version", `want ${ADMISSION_VERSION}, got ${show(o.version)}`);
  }
  return o;
}

function attachment(o: Record<string, unknown>): { containerId: string; ifname: string } {
  const containerId = string(o, "containerId");
  const ifname = string(o, "ifname");
  try {
    validateContainerId(containerId);
  } catch (err) {
    throw bad("containerId", (err as Error).message);
  }
  try {
    validateIfname(ifname, "ifname");
  } catch (err) {
    throw bad("ifname", (err as Error).message);
  }
  return { containerId, ifname };
}

function podOf(o: Record<string, unknown>): { pod?: PodRef } {
  if (o.pod === undefined || o.pod === null) return {};
  const pod = o.pod;
  if (typeof pod !== "object" || Array.isArray(pod)) {
    throw bad("pod", `want {"namespace","name"}, got ${show(pod)}`);
  }
  const p = pod as Record<string, unknown>;
  const namespace = string(p, "namespace", "pod.namespace");
  const name = string(p, "name", "pod.name");
  if (namespace.length > 63 || !DNS_LABEL.test(namespace)) {
    throw bad("pod.namespace", `${show(namespace)} is not a Kubernetes namespace name`);
  }
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    throw bad("pod.name", `${show(name)} is not a Kubernetes pod name`);
  }
  return { pod: { namespace, name } };
}

function addresses(v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_IPS) {
    throw bad("ips", `want a list of 1 to ${MAX_IPS} addresses, got ${show(v)}`);
  }
  const out: string[] = [];
  v.forEach((t, i) => {
    let canonical: string | undefined;
    try {
      canonical = typeof t === "string" ? formatIp(parseIp(t)) : undefined;
    } catch { /* not an address: said below */ }
    if (canonical === undefined) throw bad(`ips[${i}]`, `${show(t)} is not an IP address`);
    if (canonical !== t) throw bad(`ips[${i}]`, `${show(t)} is not canonical (${canonical})`);
    if (out.includes(t)) throw bad(`ips[${i}]`, `${show(t)} is listed twice`);
    out.push(t);
  });
  return out;
}

function string(o: Record<string, unknown>, key: string, name = key): string {
  const v = o[key];
  if (typeof v !== "string" || v === "") throw bad(name, `want a non-empty string, got ${show(v)}`);
  return v;
}

function bad(field: string, why: string): AdmissionProtocolError {
  return new AdmissionProtocolError(`Invalid admission field "${field}": ${why}`);
}

function show(v: unknown): string {
  return (JSON.stringify(v) ?? String(v)).slice(0, 80);
}
