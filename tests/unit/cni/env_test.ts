import { parseCniArgs, parseCniEnv, parseVerb } from "../../../lib/cni/env.ts";
import { CniError } from "../../../lib/cni/errors.ts";
import { assertEquals, assertThrows } from "../../harness/assert.ts";

const env = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "abc",
  CNI_NETNS: "/run/netns/x",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
};

function code(fn: () => unknown): number {
  const err = assertThrows(fn);
  if (!(err instanceof CniError)) throw err;
  return err.code;
}

Deno.test("parseCniEnv() reads a runtime's ADD environment", () => {
  const e = parseCniEnv("ADD", {
    ...env,
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=web",
    CNI_PATH: "/a:/b",
  });
  assertEquals([e.containerId, e.netns, e.ifname, e.path, e.args.get("K8S_POD_NAME")], [
    "abc",
    "/run/netns/x",
    "eth0",
    ["/a", "/b"],
    "web",
  ]);
});

Deno.test("parseCniEnv() allows an empty CNI_NETNS on DEL only", () => {
  assertEquals(parseCniEnv("DEL", { ...env, CNI_NETNS: "" }).netns, "");
  assertEquals(code(() => parseCniEnv("ADD", { ...env, CNI_NETNS: "" })), 4);
});

Deno.test("parseCniEnv() codes: missing or empty env 4, bad container ID or ifname 4", () => {
  assertEquals(
    code(() => parseCniEnv("ADD", { ...env, CNI_PATH: undefined as unknown as string })),
    4,
  );
  assertEquals(code(() => parseCniEnv("ADD", { ...env, CNI_CONTAINERID: "" })), 4);
  for (const id of ["../x", "a/b", "a\nb", "-a", "x".repeat(4096)]) {
    assertEquals(
      code(() => parseCniEnv("ADD", { ...env, CNI_CONTAINERID: id })),
      4,
      id.slice(0, 10),
    );
  }
  const bad = ["", ".", "..", "eth/0", "eth:0", "eth 0", "eth\t0", "eth\n", "eth\u00a00"];
  for (const ifname of [...bad, "x".repeat(16)]) {
    assertEquals(code(() => parseCniEnv("ADD", { ...env, CNI_IFNAME: ifname })), 4, ifname);
  }
});

Deno.test("parseCniEnv() needs only CNI_PATH for GC and STATUS", () => {
  assertEquals(parseCniEnv("GC", { CNI_COMMAND: "GC", CNI_PATH: "/x" }).containerId, "");
  assertEquals(code(() => parseCniEnv("STATUS", { CNI_COMMAND: "STATUS" })), 4);
});

Deno.test("parseVerb() is undefined without CNI_COMMAND and code 4 for an unknown one", () => {
  assertEquals(parseVerb({}), undefined);
  assertEquals(code(() => parseVerb({ CNI_COMMAND: "FROB" })), 4);
});

Deno.test("parseCniArgs() splits K=V pairs and rejects a pair without '='", () => {
  assertEquals([...parseCniArgs("A=1;B=x=y;;")], [["A", "1"], ["B", "x=y"]]);
  assertEquals(code(() => parseCniArgs("A=1;oops")), 4);
});
