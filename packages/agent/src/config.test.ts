import { describe, expect, it } from "vitest";
import { AgentConfigError, parseAgentConfig, parseLabels } from "./config.js";

describe("agent config", () => {
  it("parses labels, including the opt-in label", () => {
    expect(parseLabels("app=web, firedrill:opt-in=true,zone=")).toEqual({ app: "web", "firedrill:opt-in": "true", zone: "" });
    expect(parseLabels(undefined)).toEqual({});
  });

  it("says which label is wrong and how to write it", () => {
    expect(() => parseLabels("app")).toThrow('--labels: "app" is not key=value (e.g. --labels app=web,firedrill:opt-in=true)');
    expect(() => parseLabels("a b=c")).toThrow(/key "a b" is invalid/);
    expect(() => parseLabels("app=we b")).toThrow(/value "we b" of app is invalid/);
  });

  it("names the flag of every invalid setting", () => {
    const attempt = () =>
      parseAgentConfig({
        server: "localhost",
        token: "",
        stateDir: "/tmp/x",
        labels: {},
        logLevel: "info",
        imds: "off",
        insecure: false,
        maxLeaseTtlMs: 100,
        reconnectMaxMs: 1000,
        progressIntervalMs: 1000,
      });
    expect(attempt).toThrow(AgentConfigError);
    expect(attempt).toThrow(/--server: must be host:port/);
    expect(attempt).toThrow(/--max-lease-ttl: must be at least 1s/);
  });
});
