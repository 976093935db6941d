// CHECK: what ADD made must still be there. prevResult says what that was; the kernel is asked
// on both sides (host veth on the bridge, pod interface with its addresses and routes).
import { CniError, ErrorCode } from "../cni/errors.ts";
import type { Result } from "../cni/result.ts";
import { hasIpMasq } from "../net/ipmasq.ts";
import { checkPodNetns } from "../net/netns.ts";
import { inNetns, run, runOutput } from "../net/run.ts";
import { hostVethName } from "./plan.ts";
import { ipamFor, type Request } from "./request.ts";

interface IpLink {
  ifname: string;
  address?: string;
  master?: string;
  operstate?: string;
  addr_info?: { local: string; prefixlen: number }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
}

/** Throws a CNI error naming the first thing that is missing or wrong. */
export async function check(req: Request): Promise<void> {
  const { env, conf } = req;
  const prev = conf.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidConfig, "Required prevResult missing");
  checkPodNetns(env.netns);
  await ipamFor(req).check();
  const hostVeth = hostVethName(env.containerId, env.ifname);
  await checkHostSide(hostVeth, conf.bridge);
  await checkPodSide(env.netns, env.ifname, prev);
  // Untracked resources count too (spec): the masquerade this attachment got at ADD.
  const families = [
    ...new Set((prev.ips ?? []).map((i) => i.address.includes(":") ? 6 : 4)),
  ] as (4 | 6)[];
  if (conf.ipMasq && !await hasIpMasq(conf.name, env.containerId, families)) {
    fail(`masquerade chain for container ${env.containerId} is missing`);
  }
}

async function checkHostSide(hostVeth: string, bridge: string): Promise<void> {
  const out = await runOutput(["ip", "-j", "link", "show", "dev", hostVeth]);
  if (out.code !== 0) fail(`host veth ${hostVeth} is missing`);
  const link = (JSON.parse(out.stdout) as IpLink[])[0];
  if (link.master !== bridge) {
    fail(`host veth ${hostVeth} is not on bridge ${bridge} (master: ${link.master ?? "none"})`);
  }
}

async function checkPodSide(netns: string, ifname: string, prev: Result): Promise<void> {
  const out = await runOutput(inNetns(netns, ["ip", "-j", "addr", "show", "dev", ifname]));
  if (out.code !== 0) fail(`interface ${ifname} is missing in ${netns}: ${out.stderr.trim()}`);
  const link = (JSON.parse(out.stdout) as IpLink[])[0];
  const want = prev.interfaces?.find((i) => i.name === ifname && i.sandbox !== undefined);
  if (want?.mac && link.address !== want.mac) {
    fail(`${ifname} in ${netns} has MAC ${link.address}, prevResult says ${want.mac}`);
  }
  const have = (link.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
  for (const ip of prev.ips ?? []) {
    if (!have.includes(ip.address)) {
      fail(`address ${ip.address} is missing on ${ifname} in ${netns}`);
    }
  }
  for (const family of ["-4", "-6"]) {
    const routes = (prev.routes ?? []).filter((r) => r.dst.includes(":") === (family === "-6"));
    if (!routes.length) continue;
    // One batch per family (ip cannot switch family per batch line); each route by exact prefix.
    const batch = routes.map((r) => `route show ${r.dst}`).join("\n") + "\n";
    const lines = (await run(inNetns(netns, ["ip", family, "-j", "-batch", "-"]), { stdin: batch }))
      .trim().split("\n");
    routes.forEach((r, i) => {
      const found = JSON.parse(lines[i] || "[]") as IpRoute[];
      if (!found.some((have) => !r.gw || have.gateway === r.gw)) {
        fail(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ""} is missing in ${netns}`);
      }
    });
  }
}

function fail(what: string): never {
  throw new CniError(ErrorCode.Internal, `CHECK failed: ${what}`);
}
