// What the plugin's verbs need from IPAM, whether built in or delegated to another plugin.
import type { Attachment } from "../cni/netconf.ts";
import type { Result } from "../cni/result.ts";

/** One IPAM backend for one invocation. */
export interface Ipam {
  /** Allocates; returns ips (with gateways) and routes. */
  add(): Promise<Result>;
  /** Releases; succeeds when nothing is held. */
  del(): Promise<void>;
  /**
   * The addresses the attachment holds now (canonical, no prefix); empty when unknown. DEL
   * removes their conntrack entries before it releases them.
   */
  held(): Promise<string[]>;
  /** Throws when the attachment's reservation is missing. */
  check(): Promise<void>;
  /** Releases everything not in `valid`; returns the attachments it released. */
  gc(valid: readonly Attachment[]): Promise<Attachment[]>;
  /** Throws CNI error 50 when an ADD could not be served. */
  status(): Promise<void>;
}
