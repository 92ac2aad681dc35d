/**
 * Join tokens and enrollment limits: expiry on the store's clock, 2,000 enrollments at once
 * against the per-token rate and the agent cap while the HTTP API keeps answering.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { AGENT_TOKEN_METADATA_KEY, AgentService, EnrollRequestSchema, REFUSAL_METADATA_KEY, bearer, createClientConstructor } from "@firedrill/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { createStore, DATABASE_FILE } from "../store/store.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { makeCsr, startTestControlPlane, tlsCredentials } from "../test-support/test-agent.js";
import type { TestControlPlane } from "../test-support/test-agent.js";
import { createJoinTokenStore } from "./join-tokens.js";
import { createIdentityRegistry } from "./identities.js";

const CA = "ab".repeat(32);

describeEachEngine("join token store", (engine) => {
  it("expires on the clock, counts uses atomically, and refuses a token pinning another CA", async () => {
    const options = await engine.freshStoreOptions();
    const db = createStore(options).db;
    try {
      const store = createJoinTokenStore(db);
      const t0 = 1_800_000_000_000;
      const { text, token } = store.create({ expiresAt: t0 + 60_000, usesAllowed: 2, labels: {}, createdBy: "test" }, CA, t0);
      expect(token.state).toBe("active");
      expect(store.use(text, CA, t0).ok).toBe(true);
      const other = store.use(text, "cd".repeat(32), t0);
      expect(other).toMatchObject({ ok: false, reason: expect.stringContaining("pins another CA") });
      const late = store.use(text, CA, t0 + 61_000);
      expect(late).toMatchObject({ ok: false, reason: expect.stringContaining("expired") });
      expect(store.use(text, CA, t0 + 1000).ok).toBe(true);
      expect(store.use(text, CA, t0 + 2000)).toMatchObject({ ok: false, reason: expect.stringContaining("used as many times") });
      expect(store.get(token.id, t0 + 2000)).toMatchObject({ uses: 2, state: "used-up" });
      // Only the hash of the secret is stored.
      const secret = text.split("_").slice(2, -1).join("_");
      expect(JSON.stringify(db.prepare("SELECT * FROM join_tokens").all())).not.toContain(secret);
      if (engine.engine === "sqlite") expect(readFileSync(join(options.dataDir, DATABASE_FILE)).includes(secret)).toBe(false);
    } finally {
      db.close();
    }
  });

  it("keeps enrolled identities: renew, revoke once, count the active ones", async () => {
    const db = await engine.openDatabase();
    const registry = createIdentityRegistry(db);
    const t0 = 1_800_000_000_000;
    registry.enroll({ agentId: "agt_a", hostname: "a", joinTokenId: "jt_1", labels: { zone: "a" }, enrolledAt: t0, certSerial: "01", certNotAfter: t0 + 86_400_000 });
    registry.enroll({ agentId: "agt_b", hostname: "b", joinTokenId: null, labels: {}, enrolledAt: t0, certSerial: "02", certNotAfter: t0 + 86_400_000 });
    expect(registry.countActive()).toBe(2);
    registry.renew("agt_a", "03", t0 + 2 * 86_400_000, t0 + 1000);
    expect(registry.get("agt_a")).toMatchObject({ certSerial: "03", certNotAfter: t0 + 2 * 86_400_000, renewedAt: t0 + 1000, labels: { zone: "a" } });
    expect(registry.revoke("agt_b", "admin", "lost laptop", t0 + 2000)).toBe(true);
    expect(registry.revoke("agt_b", "other", "again", t0 + 3000)).toBe(true);
    expect(registry.get("agt_b")).toMatchObject({ revokedAt: t0 + 2000, revokedBy: "admin", revokeReason: "lost laptop" });
    expect(registry.revoke("agt_nope", "admin", "x", t0)).toBe(false);
    // A revoked identity's certificate is not renewed.
    registry.renew("agt_b", "04", t0 + 3 * 86_400_000, t0 + 4000);
    expect(registry.get("agt_b")?.certSerial).toBe("02");
    expect(registry.countActive()).toBe(1);
  });
});

describe("enrollment limits", () => {
  let tcp: TestControlPlane | undefined;
  afterEach(async () => {
    await tcp?.cleanup();
    tcp = undefined;
  });

  it("2,000 enrollments at once: the per-token rate and the agent cap hold, and the API keeps answering", async () => {
    tcp = await startTestControlPlane({ insecureAgents: false, enrollRatePerToken: 20, maxAgents: 150 });
    const caPem = readFileSync(join(tcp.dataDir, "pki", "ca.crt"), "utf8");
    const { csrPem } = await makeCsr();
    const Client = createClientConstructor(AgentService);
    const clients = Array.from({ length: 20 }, () => new Client(tcp!.cp.grpcAddress, tlsCredentials(caPem)));
    const metadata = new grpc.Metadata();
    metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(tcp.token()));
    const outcomes = new Map<string, number>();
    let healthChecks = 0;
    let apiFailures = 0;
    let done = false;
    const health = (async () => {
      while (!done) {
        const res = await tcp!.fetch(`${tcp!.cp.httpUrl}/api/v1/agents`).catch(() => undefined);
        if (res?.status === 200) healthChecks += 1;
        else apiFailures += 1;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    await Promise.all(
      Array.from({ length: 2000 }, (_, i) =>
        new Promise<void>((resolve) => {
          clients[i % clients.length]!.enroll(create(EnrollRequestSchema, { csrPem, hostname: `h${i}` }), metadata, {}, (err: grpc.ServiceError | null) => {
            const key = err ? `${grpc.status[err.code]}:${String(err.metadata?.get(REFUSAL_METADATA_KEY)[0] ?? "")}` : "OK";
            outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
            resolve();
          });
        }),
      ),
    );
    done = true;
    await health;
    for (const c of clients) c.close();
    const ok = outcomes.get("OK") ?? 0;
    // The burst (10 s of the rate: 200) is above the cap (150): the cap is what stops them.
    expect(ok).toBe(150);
    expect(outcomes.get("RESOURCE_EXHAUSTED:limit")).toBe(2000 - 150);
    expect(healthChecks).toBeGreaterThan(0);
    expect(apiFailures).toBe(0);
    const joinTokens = (await tcp.api("GET", "/api/v1/join-tokens?all=1")).body.joinTokens as { uses: number }[];
    expect(joinTokens[0]!.uses).toBe(150);
  });

  it("meters enrollments per join token: a burst of ten seconds' worth, then the rate", async () => {
    tcp = await startTestControlPlane({ insecureAgents: false, enrollRatePerToken: 10 });
    const caPem = readFileSync(join(tcp.dataDir, "pki", "ca.crt"), "utf8");
    const { csrPem } = await makeCsr();
    const Client = createClientConstructor(AgentService);
    const client = new Client(tcp.cp.grpcAddress, tlsCredentials(caPem));
    const metadata = new grpc.Metadata();
    metadata.set(AGENT_TOKEN_METADATA_KEY, bearer(tcp.token()));
    const t0 = Date.now();
    const results = await Promise.all(
      Array.from({ length: 400 }, () =>
        new Promise<string>((resolve) =>
          client.enroll(create(EnrollRequestSchema, { csrPem, hostname: "h" }), metadata, {}, (err: grpc.ServiceError | null) =>
            resolve(err ? String(err.metadata?.get(REFUSAL_METADATA_KEY)[0] ?? grpc.status[err.code]) : "ok"),
          ),
        ),
      ),
    );
    const seconds = (Date.now() - t0) / 1000;
    client.close();
    const ok = results.filter((r) => r === "ok").length;
    expect(ok).toBeGreaterThanOrEqual(100);
    expect(ok).toBeLessThanOrEqual(100 + Math.ceil(seconds * 10) + 1);
    expect(results.filter((r) => r !== "ok").every((r) => r === "limit")).toBe(true);
  });
});

describe("join token lifetimes", () => {
  let cp: TestControlPlane | undefined;
  afterEach(async () => {
    await cp?.cleanup();
    cp = undefined;
  });

  it("takes the lifetimes `join-token create --ttl` advertises (90m, 24h, 7d, 2w) and refuses the rest, saying what works", async () => {
    cp = await startTestControlPlane({ insecureAgents: false });
    for (const [ttl, hours] of [["90m", 1.5], ["24h", 24], ["7d", 168], ["2w", 336]] as const) {
      const res = await cp.api("POST", "/api/v1/join-tokens", { ttl });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      const lifetimeH = (Date.parse(res.body.joinToken.expiresAt) - Date.parse(res.body.joinToken.createdAt)) / 3_600_000;
      expect(lifetimeH).toBeCloseTo(hours, 1);
    }
    for (const ttl of ["7x", "30s", "400d"]) {
      const res = await cp.api("POST", "/api/v1/join-tokens", { ttl });
      expect(res.status).toBe(400);
      expect(JSON.stringify(res.body)).toContain("7d");
    }
  });
});
