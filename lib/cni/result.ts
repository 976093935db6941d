// CNI results: one internal shape (spec 1.1.0), parsed from any version and written in the
// version the config asked for (containernetworking/cni pkg/types/100, 040, internal/convert.go).
import { CniError, ErrorCode } from "./errors.ts";
import { type CniVersion, versionAtLeast } from "./version.ts";

/** An interface the plugin created or configured. */
export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

/** An address, with the index of its interface in `interfaces`. */
export interface IpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

/** A route to install in the container. */
export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

/** DNS settings. */
export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** A result in the 1.1.0 shape. */
export interface Result {
  interfaces?: Interface[];
  ips?: IpConfig[];
  routes?: Route[];
  dns?: Dns;
}

/**
 * Writes `result` as the given version: 1.0.0 drops the 1.1 additions, 0.3.x/0.4.0 also add
 * `version` to each IP.
 */
export function formatResult(result: Result, version: CniVersion): Record<string, unknown> {
  const v11 = versionAtLeast(version, "1.1.0");
  const v1 = versionAtLeast(version, "1.0.0");
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces) {
    out.interfaces = result.interfaces.map((i) => {
      const { name, mac, sandbox, mtu, socketPath, pciID } = i;
      return dropUndefined(
        v11 ? { name, mac, mtu, sandbox, socketPath, pciID } : { name, mac, sandbox },
      );
    });
  }
  if (result.ips) {
    out.ips = result.ips.map((ip) => {
      const version = v1 ? undefined : (ip.address.includes(":") ? "6" : "4");
      return dropUndefined({
        version,
        address: ip.address,
        gateway: ip.gateway,
        interface: ip.interface,
      });
    });
  }
  if (result.routes) {
    out.routes = result.routes.map((r) =>
      dropUndefined(
        v11 ? { ...r } : { dst: r.dst, gw: r.gw },
      )
    );
  }
  if (
    result.dns &&
    Object.values(result.dns).some((v) => v !== undefined && (!Array.isArray(v) || v.length))
  ) {
    out.dns = dropUndefined({ ...result.dns });
  }
  return out;
}

function dropUndefined<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/**
 * Parses a result of any version (a delegated IPAM plugin's answer, a prevResult) into the
 * 1.1.0 shape. `field` names where it came from, for the error message.
 */
export function parseResult(json: unknown, field: string): Result {
  const obj = asObject(json, field);
  if ("ip4" in obj || "ip6" in obj) return parseLegacyResult(obj, field);
  const result: Result = {};
  if (obj.interfaces !== undefined) {
    result.interfaces = asArray(obj.interfaces, `${field}.interfaces`).map((x, i) => {
      const o = asObject(x, `${field}.interfaces[${i}]`);
      return {
        name: asString(o.name, `${field}.interfaces[${i}].name`),
        ...optional(o, "mac", "string", `${field}.interfaces[${i}]`),
        ...optional(o, "sandbox", "string", `${field}.interfaces[${i}]`),
        ...optional(o, "mtu", "number", `${field}.interfaces[${i}]`),
      } as Interface;
    });
  }
  if (obj.ips !== undefined) {
    result.ips = asArray(obj.ips, `${field}.ips`).map((x, i) => {
      const o = asObject(x, `${field}.ips[${i}]`);
      return {
        address: asString(o.address, `${field}.ips[${i}].address`),
        ...optional(o, "gateway", "string", `${field}.ips[${i}]`),
        ...optional(o, "interface", "number", `${field}.ips[${i}]`),
      } as IpConfig;
    });
  }
  if (obj.routes !== undefined) result.routes = parseRoutes(obj.routes, `${field}.routes`);
  if (obj.dns !== undefined) result.dns = asObject(obj.dns, `${field}.dns`) as Dns;
  return result;
}

function parseLegacyResult(obj: Record<string, unknown>, field: string): Result {
  const result: Result = { ips: [], routes: [] };
  for (const key of ["ip4", "ip6"]) {
    if (obj[key] === undefined) continue;
    const o = asObject(obj[key], `${field}.${key}`);
    result.ips!.push({
      address: asString(o.ip, `${field}.${key}.ip`),
      ...optional(o, "gateway", "string", `${field}.${key}`),
    } as IpConfig);
    if (o.routes !== undefined) {
      result.routes!.push(...parseRoutes(o.routes, `${field}.${key}.routes`));
    }
  }
  if (obj.dns !== undefined) result.dns = asObject(obj.dns, `${field}.dns`) as Dns;
  return result;
}

function parseRoutes(json: unknown, field: string): Route[] {
  return asArray(json, field).map((x, i) => {
    const o = asObject(x, `${field}[${i}]`);
    const r: Route = { dst: asString(o.dst, `${field}[${i}].dst`) };
    for (const k of ["mtu", "advmss", "priority", "table", "scope"] as const) {
      Object.assign(r, optional(o, k, "number", `${field}[${i}]`));
    }
    return { ...r, ...optional(o, "gw", "string", `${field}[${i}]`) } as Route;
  });
}

function fail(field: string, want: string): never {
  throw new CniError(ErrorCode.DecodeFailure, `Cannot decode ${field}: want ${want}`);
}
function asObject(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(field, "an object");
  return v as Record<string, unknown>;
}
function asArray(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) fail(field, "a list");
  return v;
}
function asString(v: unknown, field: string): string {
  if (typeof v !== "string") fail(field, "a string");
  return v;
}
function optional(
  o: Record<string, unknown>,
  key: string,
  type: "string" | "number",
  field: string,
) {
  if (o[key] === undefined || o[key] === null) return {};
  const ok = type === "string" ? typeof o[key] === "string" : typeof o[key] === "number";
  if (!ok) fail(`${field}.${key}`, `a ${type}`);
  return { [key]: o[key] };
}
