import { describe, expect, it } from "vitest";
import { formatLabels, formatScope, MAX_SCOPE_LENGTH, MAX_SCOPE_REQUIREMENTS, parseScope, ScopeError, scopeViolation } from "./scope.js";

/** The ScopeError parseScope throws for `text`. */
function refusal(text: string): ScopeError {
  try {
    parseScope(text);
  } catch (err) {
    if (err instanceof ScopeError) return err;
    throw err;
  }
  throw new Error(`${JSON.stringify(text)} was accepted`);
}

describe("parseScope", () => {
  it("parses every form of requirement, with or without spaces", () => {
    const scope = parseScope(" env=staging, tier==web ,zone!=eu-1, team in (a,b@x.io), app notin( x , y+z ),pci,!legacy ");
    expect(scope.text).toBe("env=staging, tier==web ,zone!=eu-1, team in (a,b@x.io), app notin( x , y+z ),pci,!legacy");
    expect(scope.requirements).toEqual([
      { key: "env", operator: "=", values: ["staging"], text: "env=staging" },
      { key: "tier", operator: "=", values: ["web"], text: "tier=web" },
      { key: "zone", operator: "!=", values: ["eu-1"], text: "zone!=eu-1" },
      { key: "team", operator: "in", values: ["a", "b@x.io"], text: "team in (a,b@x.io)" },
      { key: "app", operator: "notin", values: ["x", "y+z"], text: "app notin (x,y+z)" },
      { key: "pci", operator: "exists", values: [], text: "pci" },
      { key: "legacy", operator: "absent", values: [], text: "!legacy" },
    ]);
    expect(formatScope(scope)).toBe("env=staging,tier=web,zone!=eu-1,team in (a,b@x.io),app notin (x,y+z),pci,!legacy");
  });

  it("takes label keys with the agent's characters, and keys named in/notin", () => {
    expect(parseScope("firedrill:opt-in=true,k8s.io/zone=a_b").requirements.map((r) => r.key)).toEqual(["firedrill:opt-in", "k8s.io/zone"]);
    expect(parseScope("in,notin=x,in in (in)").requirements.map((r) => r.text)).toEqual(["in", "notin=x", "in in (in)"]);
  });

  it("round-trips through formatScope", () => {
    const scope = parseScope("env == prod ,  tier in ( a , b ),!x");
    expect(parseScope(formatScope(scope)).requirements).toEqual(scope.requirements);
  });

  it.each([
    ["", 1, "the scope is empty"],
    ["   ", 1, "the scope is empty"],
    ["env=", 5, 'expected a value after =, found the end of the scope; write e.g. env=staging'],
    ["env!=,a", 6, 'expected a value after !=, found ","'],
    ["env=prod prod", 10, 'expected "," between requirements or the end, found "prod"'],
    ["env prod", 5, 'expected =, ==, !=, in (…), notin (…), "," or the end after the key "env", found "prod"'],
    ["env in a,b", 8, 'expected "(" after in, found "a"; write e.g. env in (a,b)'],
    ["env in ()", 9, 'expected a value after (, found ")"'],
    ["env in (a,b", 12, 'expected "," or ")" in the list opened at character 8, found the end of the scope'],
    ["env in (a b)", 11, 'expected "," or ")" in the list opened at character 8'],
    ["env=a,", 7, 'a requirement is missing after the last ","; remove the trailing comma'],
    [",env=a", 1, 'expected a label key, found ","'],
    ["env=a,,b", 7, 'expected a label key, found ","'],
    ["!=a", 1, 'expected a label key, found "!="'],
    ["!", 2, "expected a label key, found the end of the scope"],
    ["env=a=b", 6, 'expected "," between requirements or the end, found "="'],
    ["env=pr od;x", 10, '";" is not allowed; keys and values use letters, digits and . _ / : @ + -'],
    ["env=\u00e9t\u00e9", 5, '"\u00e9" is not allowed'],
    ["env=a\nb", 6, "U+000A is not allowed"],
    ["-env=a", 1, 'the key "-env" must start and end with a letter or digit'],
    ["env.=a", 1, 'the key "env." must start and end with a letter or digit'],
    ["e@v=a", 1, 'the key "e@v" contains "@"; keys use letters, digits and . _ / : -'],
    [`${"k".repeat(129)}=a`, 1, "is longer than 128 characters"],
    [`k=${"v".repeat(254)}`, 3, "is longer than 253 characters"],
  ])("refuses %j at character %i, saying what and how to fix it", (text, position, message) => {
    const err = refusal(text);
    expect(err.name).toBe("ScopeError");
    expect(err.position).toBe(position);
    expect(err.text).toBe(text);
    expect(err.message).toContain(`at character ${position}`);
    expect(err.message).toContain(message);
  });

  it("names the character and gives an example in its messages", () => {
    expect(refusal("env=prod prod").message).toBe(
      'invalid scope "env=prod prod" at character 10: expected "," between requirements or the end, found "prod"; separate requirements with commas, e.g. env=staging,tier in (web,api),!pci',
    );
    expect(refusal("env=").message).toBe('invalid scope "env=" at character 5 (the end): expected a value after =, found the end of the scope; write e.g. env=staging');
  });

  it("bounds the length and the number of requirements", () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=v`).join(",");
    expect(parseScope(many(MAX_SCOPE_REQUIREMENTS)).requirements).toHaveLength(MAX_SCOPE_REQUIREMENTS);
    const tooMany = refusal(many(MAX_SCOPE_REQUIREMENTS + 1));
    expect(tooMany.message).toContain(`more than ${MAX_SCOPE_REQUIREMENTS} requirements; merge values of one key with key in (a,b)`);
    expect(tooMany.position).toBe(many(MAX_SCOPE_REQUIREMENTS).length + 2);

    const longest = `k in (${Array.from({ length: 200 }, (_, i) => `v${i}`).join(",")})`.slice(0, MAX_SCOPE_LENGTH);
    expect(refusal(`${longest.padEnd(MAX_SCOPE_LENGTH + 1, "x")}`).message).toContain(`${MAX_SCOPE_LENGTH + 1} characters long, over the limit of ${MAX_SCOPE_LENGTH}`);
    expect(parseScope(`k=${"v".repeat(200)},${"a".repeat(100)}`).requirements).toHaveLength(2);
  });

  it("parses hostile input in linear time", () => {
    const nested = `${"(".repeat(MAX_SCOPE_LENGTH)}`;
    expect(refusal(nested).position).toBe(1);
    const words = `k in (${"a,".repeat(508)}`;
    expect(words.length).toBeLessThanOrEqual(MAX_SCOPE_LENGTH);
    expect(refusal(words).message).toContain("expected a value after ,");
  });
});

describe("scopeViolation", () => {
  const prod = { env: "prod", app: "web" };
  const staging = { env: "staging", app: "web" };
  const unlabelled = { app: "web" };
  const check = (text: string, labels: Record<string, string>) => scopeViolation(parseScope(text), labels);

  it("allows labels every requirement holds for", () => {
    expect(check("env=staging,app in (web,api),app,!pci", staging)).toBeUndefined();
  });

  it("names the first requirement that refuses, in canonical form", () => {
    expect(check("app=web,env!=prod", prod)).toBe("env!=prod");
    expect(check("app==web , env==staging", prod)).toBe("env=staging");
    expect(check("env in (staging, dev)", prod)).toBe("env in (staging,dev)");
    expect(check("env notin (prod)", prod)).toBe("env notin (prod)");
    expect(check("!env", prod)).toBe("!env");
    expect(check("pci", prod)).toBe("pci");
  });

  it("lets a missing label satisfy != and notin (Kubernetes semantics), but not = or in", () => {
    expect(check("env!=prod", unlabelled)).toBeUndefined();
    expect(check("env notin (prod,dr)", unlabelled)).toBeUndefined();
    expect(check("env=staging", unlabelled)).toBe("env=staging");
    expect(check("env in (staging)", unlabelled)).toBe("env in (staging)");
    // To refuse hosts without the label, require it too.
    expect(check("env,env!=prod", unlabelled)).toBe("env");
  });

  it("does not see inherited object properties as labels", () => {
    expect(check("constructor", {})).toBe("constructor");
    expect(check("!toString", {})).toBeUndefined();
  });
});

describe("formatLabels", () => {
  it("sorts by key and bounds the list", () => {
    expect(formatLabels({ b: "2", a: "1" })).toBe("a=1, b=2");
    expect(formatLabels({})).toBe("no labels");
    expect(formatLabels({ a: "1", b: "2", c: "3" }, 2)).toBe("a=1, b=2 and 1 more");
  });
});
