import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { parseNodesFile } from "../../../lib/node/nodes_file.ts";

Deno.test("parseNodesFile() reads ip, optional ips and podCIDRs", () => {
  assertEquals(
    parseNodesFile(
      '[{"name":"n1","ip":"192.0.2.11","ips":["2001:db8::11","192.0.2.11"],"podCIDRs":["10.244.1.0/24"]}]',
    ),
    [{ name: "n1", ips: ["192.0.2.11", "2001:db8::11"], podCIDRs: ["10.244.1.0/24"] }],
  );
});

Deno.test("parseNodesFile() names the entry and field that is wrong", () => {
  assertThrows(() => parseNodesFile("{"), /not JSON/);
  assertThrows(() => parseNodesFile("{}"), /array/);
  assertThrows(
    () => parseNodesFile('[{"name":"n1","podCIDRs":"10.0.0.0/24"}]'),
    /entry 0 \(n1\): "podCIDRs"/,
  );
  assertThrows(() => parseNodesFile('[{"ip":"192.0.2.1"}]'), /"name"/);
});

Deno.test("parseNodesFile() reads optional labels (ClusterNetworkPolicy node peers)", () => {
  assertEquals(
    parseNodesFile('[{"name":"n1","ip":"192.0.2.11","labels":{"zone":"a"}}]'),
    [{ name: "n1", ips: ["192.0.2.11"], podCIDRs: [], labels: { zone: "a" } }],
  );
  assertThrows(
    () => parseNodesFile('[{"name":"n1","labels":{"zone":1}}]'),
    /entry 0 \(n1\): "labels" must be an object of strings/,
  );
  assertThrows(() => parseNodesFile('[{"name":"n1","labels":["a"]}]'), /"labels"/);
});
