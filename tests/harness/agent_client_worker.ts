// The worker of tests/harness/agent_client.ts: one askAgent() per message, its outcome posted back.
import { AgentUnavailable, askAgent } from "../../lib/plugin/admission.ts";
import type { AskJob, AskOutcome } from "./agent_client.ts";

const scope = self as unknown as {
  onmessage: (e: MessageEvent<AskJob>) => void;
  postMessage(outcome: AskOutcome): void;
};

scope.onmessage = (e) => {
  const { socket, request, timeoutMs } = e.data;
  try {
    askAgent(socket, request, timeoutMs);
    scope.postMessage({ ok: true });
  } catch (err) {
    const { name, message } = err as Error;
    const delivered = err instanceof AgentUnavailable ? err.delivered : undefined;
    scope.postMessage({ ok: false, name, message, delivered });
  }
};
