// scripts/kind.sh without Docker or kind: docker, kind and kubectl are stubs that log their
// arguments, so the test sees which commands each step runs and with which files.
// deno-lint-ignore-file no-import-prefix -- test-only npm packages, pinned where they are used
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { parseAllDocuments } from "npm:yaml@2.9.1";
import { agentPod, ROOT } from "./deploy_files.ts";

const STUB = `#!/usr/bin/env bash
echo "$(basename "$0") $*" >>"$STUB_DIR/log"
case "$(basename "$0") $*" in
  *"get nodes"*) printf 'mycni-worker\\nmycni-worker2\\n' ;;
  *"get pod mycni-test-a"*) printf '10.244.1.5\\n' ;;
  *"get pod mycni-test-b"*) printf '10.244.2.7\\nfd00:10:244:2::7\\n' ;;
  *"apply -f -"*) cat >"$STUB_DIR/applied.yaml" ;;
esac
`;

/** Runs scripts/kind.sh with stubbed tools; returns the exit code, the log and applied YAML. */
async function runKindSh(args: string[], env: Record<string, string> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "mycni-kind-sh-" });
  try {
    for (const tool of ["docker", "kind", "kubectl"]) {
      await Deno.writeTextFile(`${dir}/${tool}`, STUB, { mode: 0o755 });
    }
    const out = await new Deno.Command("bash", {
      args: ["scripts/kind.sh", ...args],
      cwd: ROOT,
      // Only PATH from outside: an IMAGE or CLUSTER set in the caller's shell would change the run.
      env: { ...env, STUB_DIR: dir, PATH: `${dir}:${Deno.env.get("PATH")}` },
      clearEnv: true,
      stdin: "null",
      signal: AbortSignal.timeout(30_000),
    }).output();
    const read = (f: string) => Deno.readTextFile(`${dir}/${f}`).catch(() => "");
    return {
      code: out.code,
      stderr: new TextDecoder().decode(out.stderr),
      log: (await read("log")).trim().split("\n").filter(Boolean),
      applied: await read("applied.yaml"),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("kind.sh image, kind-up, kind-load, deploy, kind-down run docker, kind, kubectl", async () => {
  const r = await runKindSh(["image", "kind-up", "kind-load", "deploy", "kind-down"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.log, [
    "docker build -t mycni:dev .",
    "kind create cluster --name mycni --config deploy/kind/cluster.yaml",
    "kind load docker-image mycni:dev --name mycni",
    "kubectl --context kind-mycni apply -f deploy/mycni.yaml",
    "kubectl --context kind-mycni -n kube-system rollout status daemonset/mycni --timeout=180s",
    "kind delete cluster --name mycni",
  ]);
  // The image built and loaded is the one the manifest runs; every file named is in the repo.
  assert.equal(agentPod().container.image, "mycni:dev");
  for (const file of ["Dockerfile", "deploy/kind/cluster.yaml", "deploy/mycni.yaml"]) {
    assert.ok(existsSync(ROOT + file), `${file} exists`);
  }
});

Deno.test("kind.sh deploy sets the image when IMAGE is not the manifest's", async () => {
  const r = await runKindSh(["deploy"], { IMAGE: "registry.example/mycni:v1" });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.log.includes(
    "kubectl --context kind-mycni -n kube-system set image daemonset/mycni mycni=registry.example/mycni:v1",
  ));
});

Deno.test("kind.sh kind-test pings across two workers and outside, waits for CoreDNS", async () => {
  const r = await runKindSh(["kind-test"]);
  assert.equal(r.code, 0, r.stderr);
  const k = "kubectl --context kind-mycni";
  for (
    const line of [
      `${k} wait --for=condition=Ready nodes --all --timeout=180s`,
      `${k} -n kube-system wait --for=condition=Ready pod -l k8s-app=kube-dns --timeout=180s`,
      `${k} exec mycni-test-a -- ping -c 3 -W 2 10.244.2.7`,
      `${k} exec mycni-test-a -- ping -c 3 -W 2 fd00:10:244:2::7`,
      `${k} exec mycni-test-b -- ping -c 3 -W 2 10.244.1.5`,
      `${k} exec mycni-test-a -- ping -c 3 -W 2 1.1.1.1`,
      `${k} delete pod -l app.kubernetes.io/name=mycni-kind-test --wait=false`,
    ]
  ) assert.ok(r.log.includes(line), `ran: ${line}\n${r.log.join("\n")}`);
  const pods = parseAllDocuments(r.applied).map((d) => d.toJS());
  assert.deepEqual(pods.map((p) => p.spec.nodeName), ["mycni-worker", "mycni-worker2"]);
});

Deno.test("kind.sh rejects an unknown step", async () => {
  const r = await runKindSh(["kind-upp"]);
  assert.equal(r.code, 2);
  assert.deepEqual(r.log, []);
});
