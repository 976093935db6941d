// A throwaway certificate authority and one server certificate from it, made with `openssl`, for
// tests that need https the way a pod sees the API server (service-account ca.crt + server cert).
import { join } from "node:path";
import { run } from "../../lib/process/run.ts";

/** PEM files written into a directory. */
export interface TestCerts {
  /** The CA certificate: what a pod finds as `ca.crt` in its service-account dir. */
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
}

/**
 * Writes a CA and a server certificate for `ips` (subjectAltName IP entries) and `dnsNames`
 * into `dir`. Valid for a day; P-256 keys, so it takes a few milliseconds.
 *
 * @example
 * const certs = await makeTestCerts(dir, { ips: ["10.96.0.1"], dnsNames: ["kubernetes"] });
 */
export async function makeTestCerts(
  dir: string,
  opts: { ips?: readonly string[]; dnsNames?: readonly string[] },
): Promise<TestCerts> {
  const p = (name: string) => join(dir, name);
  // No system openssl.cnf: its defaults (e.g. CA:TRUE on every `req -x509`) differ between
  // distributions; every extension is given explicitly instead.
  await Deno.writeTextFile(p("openssl.cnf"), "[req]\ndistinguished_name = dn\n[dn]\n");
  const common = ["-config", p("openssl.cnf"), "-newkey", "ec", "-pkeyopt"];
  await run([
    "openssl",
    "req",
    "-x509",
    ...common,
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.crt"),
    "-days",
    "1",
    "-subj",
    "/CN=mycni-test-ca",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  const san = [
    ...(opts.ips ?? []).map((ip) => `IP:${ip}`),
    ...(opts.dnsNames ?? []).map((d) => `DNS:${d}`),
  ].join(",");
  await run([
    "openssl",
    "req",
    "-x509",
    ...common,
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    p("server.key"),
    "-out",
    p("server.crt"),
    "-CA",
    p("ca.crt"),
    "-CAkey",
    p("ca.key"),
    "-days",
    "1",
    "-subj",
    "/CN=kube-apiserver",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-addext",
    "keyUsage=critical,digitalSignature",
    "-addext",
    "extendedKeyUsage=serverAuth",
    "-addext",
    `subjectAltName=${san}`,
  ]);
  return { caCert: p("ca.crt"), serverCert: p("server.crt"), serverKey: p("server.key") };
}
