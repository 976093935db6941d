// The plugin's admission client (lib/plugin/admission.ts) run in a worker thread: askAgent()
// blocks its thread while it waits for the answer, and a test's agent, served from the test's
// own thread, must go on answering meanwhile.
import { AgentUnavailable } from "../../lib/plugin/admission.ts";
import type { AdmissionRequest } from "../../lib/plugin/admission_protocol.ts";

/** What the worker is asked and what it says back. */
export interface AskJob {
  readonly socket: string;
  readonly request: AdmissionRequest;
  readonly timeoutMs: number;
}
export type AskOutcome =
  | { readonly ok: true }
  | {
    readonly ok: false;
    readonly name: string;
    readonly message: string;
    readonly delivered?: boolean;
  };

/**
 * askAgent() in a fresh worker: resolves when the agent said yes, rejects with the
 * {@linkcode AgentUnavailable} askAgent threw (or another Error with its message).
 *
 * @example
 * await askInWorker(path, { version: 1, kind: "ping" }, 2000);
 */
export function askInWorker(socket: string, request: AdmissionRequest, timeoutMs: number) {
  const worker = new Worker(new URL("./agent_client_worker.ts", import.meta.url), {
    type: "module",
  });
  return new Promise<void>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<AskOutcome>) => {
      worker.terminate();
      const out = e.data;
      if (out.ok) resolve();
      else if (out.name === "AgentUnavailable") {
        reject(new AgentUnavailable(out.message, out.delivered ?? false));
      } else reject(new Error(`${out.name}: ${out.message}`));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      worker.terminate();
      reject(new Error(`the ask worker failed: ${e.message}`));
    };
    worker.postMessage({ socket, request, timeoutMs } satisfies AskJob);
  });
}
