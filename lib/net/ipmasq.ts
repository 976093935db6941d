// Per-attachment masquerade for `ipMasq: true` (the reference bridge's option; the agent
// normally masquerades node-wide). The chain name derives from (network, container ID), so DEL
// removes it even when the netns and prevResult are gone (the reference leaks it: plugins#810).
import { nameDigest } from "../sys/digest.ts";
import { run } from "../process/run.ts";

/** The addresses of one attachment and the networks they sit in. */
export interface MasqTarget {
  readonly network: string;
  readonly containerId: string;
  /** [{ ip: "10.244.1.5", cidr: "10.244.1.0/24", family: 4 }] */
  readonly addrs: readonly { ip: string; cidr: string; family: 4 | 6 }[];
}

const MULTICAST = { 4: "224.0.0.0/4", 6: "ff00::/8" } as const;

/** iptables chain name: "MYCNI-" + 20 hex characters (the limit is 28). */
export function masqChainName(network: string, containerId: string): string {
  return "MYCNI-" + nameDigest(`${network}/${containerId}`).slice(0, 20);
}

/** Adds the chain and the POSTROUTING jump; idempotent (an old copy is removed first). */
export async function setupIpMasq(t: MasqTarget): Promise<void> {
  await teardownIpMasq(t.network, t.containerId);
  const chain = masqChainName(t.network, t.containerId);
  for (const family of [4, 6] as const) {
    const addrs = t.addrs.filter((a) => a.family === family);
    if (!addrs.length) continue;
    const rules = [
      "*nat",
      `:${chain} - [0:0]`,
      ...addrs.map((a) => `-A ${chain} -d ${a.cidr} -j ACCEPT`),
      `-A ${chain} ! -d ${MULTICAST[family]} -j MASQUERADE`,
      ...addrs.map((a) =>
        `-A POSTROUTING -s ${a.ip} -m comment --comment "${
          comment(t.network, t.containerId)
        }" -j ${chain}`
      ),
      "COMMIT",
    ];
    await run([tool(family, "restore"), "--noflush", "-w", "5"], {
      stdin: rules.join("\n") + "\n",
    });
  }
}

/** Removes the chain and its jumps; nothing there is success. */
export async function teardownIpMasq(network: string, containerId: string): Promise<void> {
  const chain = masqChainName(network, containerId);
  for (const family of [4, 6] as const) {
    const saved = await saveNat(family);
    if (!saved.includes(`:${chain} `)) continue;
    const jumps = saved.split("\n").filter((l) =>
      l.startsWith("-A POSTROUTING ") && l.endsWith(`-j ${chain}`)
    );
    const rules = [
      "*nat",
      ...jumps.map((l) => l.replace(/^-A /, "-D ")),
      `-F ${chain}`,
      `-X ${chain}`,
      "COMMIT",
    ];
    await run([tool(family, "restore"), "--noflush", "-w", "5"], {
      stdin: rules.join("\n") + "\n",
    });
  }
}

function comment(network: string, containerId: string): string {
  return `mycni ${network} ${containerId}`.slice(0, 255);
}

/**
 * The nat table as `iptables-save` prints it. A kernel without IPv6 has no ip6tables rules to
 * find (empty); any other failure is thrown: a teardown that cannot read the rules must say so,
 * not report success while the chain stays behind.
 */
async function saveNat(family: 4 | 6): Promise<string> {
  if (family === 6 && !ipv6Present()) return "";
  return await run([tool(family, "save"), "-t", "nat"]);
}

function ipv6Present(): boolean {
  try {
    Deno.statSync("/proc/sys/net/ipv6");
    return true;
  } catch {
    return false;
  }
}

function tool(family: 4 | 6, verb: "save" | "restore"): string {
  return `${family === 4 ? "iptables" : "ip6tables"}-${verb}`;
}

/** Whether the attachment's chain exists in every family it has addresses in (for CHECK). */
export async function hasIpMasq(
  network: string,
  containerId: string,
  families: readonly (4 | 6)[],
): Promise<boolean> {
  const chain = masqChainName(network, containerId);
  for (const family of families) {
    if (!(await saveNat(family)).includes(`-j ${chain}`)) return false;
  }
  return true;
}
