import { describe, expect, it } from "vitest";
import { AgentConfigError, parseProtectedProcesses } from "./config.js";

describe("--protect-process", () => {
  it("takes names, prefixes, /patterns/ (commas inside kept) and unit:NAME, comma-separated and repeated", () => {
    expect(parseProtectedProcesses(["postgres, haproxy*,unit:vault.service", "/java .*-Dapp=(a|b){1,2}/,/x/", "redis-server"])).toEqual([
      "postgres",
      "haproxy*",
      "unit:vault.service",
      "/java .*-Dapp=(a|b){1,2}/",
      "/x/",
      "redis-server",
    ]);
    expect(parseProtectedProcesses(undefined)).toEqual([]);
    expect(parseProtectedProcesses("")).toEqual([]);
  });

  it.each([
    ["two words", '--protect-process: "two words": use a process name (e.g. postgres, or nginx* for a prefix), /REGEX/ for the command line, or unit:NAME for a systemd unit'],
    ["/(?=x)/", '--protect-process: "/(?=x)/": the pattern lookahead ((?=…), (?!…)) is not supported'],
    ["unit:", '--protect-process: "unit:": unit:NAME needs a systemd unit name such as unit:postgresql.service'],
  ])("refuses %s with how to write it", (rule, message) => {
    expect(() => parseProtectedProcesses([rule])).toThrow(AgentConfigError);
    expect(() => parseProtectedProcesses([rule])).toThrow(message);
  });

  it("takes at most 64 rules", () => {
    expect(() => parseProtectedProcesses(Array.from({ length: 65 }, (_, i) => `p${i}`).join(","))).toThrow(
      "--protect-process: 65 rules; at most 64 (use a prefix such as nginx*, or one pattern)",
    );
  });
});
