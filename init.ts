// mycni node agent entry (stub until the agent lands): flags in, exit code out.
console.error("mycni-init: not built yet");
Deno.exit(1);
