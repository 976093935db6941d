import { isValidName, NAME_RULE } from "../../../lib/cni/name.ts";
import { assertEquals } from "../../harness/assert.ts";

Deno.test("isValidName() agrees with the skeleton's regular expression", () => {
  // The oracle is the rule itself, compiled here (the code under test uses a loop).
  const rule = new RegExp(NAME_RULE);
  const fixed = ["a", "Z9", "k8s-pod_1.a", "", "-a", ".a", "_a", "a b", "a/b", "a\nb", "é", "a@b"];
  const alphabet = "aZ09_.-@/ \té";
  const random = Array.from({ length: 2000 }, (_, n) => {
    let s = "";
    for (let k = 0; k < (n % 6); k++) s += alphabet[Math.floor(Math.random() * alphabet.length)];
    return s;
  });
  for (const text of [...fixed, ...random]) {
    assertEquals(isValidName(text), rule.test(text), JSON.stringify(text));
  }
});
