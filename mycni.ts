// mycni CNI plugin entry (stub until the plugin lands).
console.log(JSON.stringify({ cniVersion: "1.1.0", code: 999, msg: "not built yet" }));
Deno.exit(1);
