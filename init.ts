// mycni node agent entry: flags and env in, one call, exit code out.
import { runAgent } from "./lib/node/agent.ts";
import { createLogger } from "./lib/log/logger.ts";
import { runExplain } from "./lib/node/explain_cli.ts";
import { runFlows } from "./lib/node/flows_cli.ts";
import {
  parseAgentArgs,
  parseExplainArgs,
  parseFlowsArgs,
  USAGE,
  UsageError,
} from "./lib/node/options.ts";

const log = createLogger();
const env = Deno.env.toObject();
if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
  console.log(USAGE);
  Deno.exit(0);
}
if (Deno.args[0] === "explain") {
  let args;
  try {
    args = parseExplainArgs(Deno.args.slice(1));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`mycni-init explain: ${err.message}\n${USAGE}`);
    Deno.exit(2);
  }
  Deno.exit(await runExplain(args, console.log));
}
if (Deno.args[0] === "flows") {
  let args;
  try {
    args = parseFlowsArgs(Deno.args.slice(1));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`mycni-init flows: ${err.message}\n${USAGE}`);
    Deno.exit(2);
  }
  // --follow runs until interrupted: a clean end, not a broken stream.
  const stop = new AbortController();
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => stop.abort());
  Deno.exit(await runFlows(args, console.log, stop.signal));
}
let opts;
try {
  opts = parseAgentArgs(Deno.args, env);
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  console.error(`mycni-init: ${err.message}\n${USAGE}`);
  Deno.exit(2);
}
const stop = new AbortController();
for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => stop.abort());
Deno.exit(await runAgent(opts, { log, signal: stop.signal, env }));
