import { inNetnsDir } from "../../../lib/net/netns.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("inNetnsDir() is true only for a file directly in /run/netns or /var/run/netns", () => {
  const cases: [string, boolean][] = [
    ["/run/netns/cni-1234", true],
    ["/var/run/netns/x", true],
    ["/run/netns/", false],
    ["/run/netns/a/b", false],
    ["/run/netnsx/a", false],
    ["/var/run/netns/a/", false],
    ["/proc/self/ns/net", false],
    ["run/netns/a", false],
    ["/tmp/run/netns/a", false],
  ];
  for (const [path, want] of cases) assertEquals(inNetnsDir(path), want, path);
});
