#!/usr/bin/env bash
# Builds bin/mycni and bin/mycni-init (the build contract in DESIGN.md).
# `deno compile` is used when it can get its runtime (denort: downloaded, or DENORT_BIN set);
# otherwise each program becomes one bundled JS file with a deno shebang: same code, same
# behaviour, and this script says which it made. The Dockerfile runs this same script.
set -euo pipefail
cd "$(dirname "$0")/.."
DENO=${DENO:-$PWD/tools/bin/deno}
mkdir -p bin

# name -> entry file
declare -A ENTRIES=([mycni]=mycni.ts [mycni-init]=init.ts)
# The plugin starts once per pod: no type check at run time, no config lookup, no prompts, and
# --ext=js: a file without an extension is otherwise taken for TypeScript and transpiled on
# every start (which also drops the parentheses that make V8 compile functions eagerly).
RUN_FLAGS="run --allow-all --no-config --no-lock --no-prompt --ext=js"
# The agent lives as long as the node: V8's small young generation and lite mode (no optimizing
# JIT) keep it under the 64 MiB target with 1000 nodes (bench/agent_sync.ts); it is not CPU-bound.
# The plugin lives ~20 ms: lite mode spares it the baseline and optimizing compilers and native
# regular expressions, which V8 would start on its loops and regexes and which cannot pay back in
# one run (paired runs: ~1.5-1.9 ms less on ADD and DEL under load; README "Performance").
declare -A V8_FLAGS=([mycni]="--v8-flags=--lite-mode" [mycni-init]="--v8-flags=--max-semi-space-size=1,--lite-mode")

build_one() {
  local name=$1 entry=$2 tmp="bin/.$1.tmp" js="bin/.$1.js"
  # One bundled JS file per program; the plugin's gets its functions compiled eagerly, so the
  # V8 code cache holds them (scripts/eager_functions.ts says why).
  "$DENO" bundle --quiet --no-config --platform deno --output "$js" "$entry"
  if [[ $name == mycni ]]; then
    "$DENO" run --quiet --no-config --no-lock --allow-read --allow-write scripts/eager_functions.ts "$js"
  fi
  if [[ ${MYCNI_BUILD:-auto} != bundle ]] &&
    timeout 120 "$DENO" compile --quiet --no-check --no-config --allow-all ${V8_FLAGS[$name]} --output "$tmp" "$js" 2>"bin/.$name.compile.log"; then
    mv -f "$tmp" "bin/$name" && rm -f "$js"
    echo "build: bin/$name is a deno compile executable"
    return
  fi
  if [[ ${MYCNI_BUILD:-auto} == compile ]]; then
    echo "build: deno compile failed for bin/$name:" >&2; cat "bin/.$name.compile.log" >&2; exit 1
  fi
  rm -f "$tmp" "$tmp"-* 2>/dev/null || true
  # A bundle needs deno at run time: the shebang names the binary this build used, so the
  # runtime's exec works without deno on PATH (runtimes exec plugins with a minimal env).
  local shebang=${DENO_SHEBANG:-$(readlink -f "$DENO")}
  { printf '#!/usr/bin/env -S %s %s\n' "$shebang" "$RUN_FLAGS${V8_FLAGS[$name]:+ ${V8_FLAGS[$name]}}"; cat "$js"; } >"$tmp"
  rm -f "$js"
  chmod 0755 "$tmp" && mv -f "$tmp" "bin/$name"
  echo "build: bin/$name is a bundled script for $shebang (deno compile cannot get denort: $(grep -m1 -o 'Download[^ ]* [^ ]*\|error: .*' "bin/.$name.compile.log" 2>/dev/null | head -c 120 || echo off))"
}

for name in "${!ENTRIES[@]}"; do build_one "$name" "${ENTRIES[$name]}"; done
