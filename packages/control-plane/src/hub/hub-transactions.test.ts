/**
 * The hub's transactions on PostgreSQL, where a transaction that loses a serialization conflict
 * (to another replica) is re-run by the engine: a hub batch or slice cannot be re-run (it consumed
 * its queue, its handlers touched memory, its writes to streams wait for the commit), so it fails
 * once — nothing of it kept, nothing sent — instead of running twice. A real cluster, two
 * connections making a write skew.
 */
import { pino } from "pino";
import { afterEach, expect, it } from "vitest";
import { createMetrics } from "../metrics.js";
import { createPostgresDatabase } from "../store/postgres/database.js";
import { createStore, type Store } from "../store/store.js";
import { describeEachEngine } from "../test-support/store-engines.js";
import { tokenAuthenticator } from "../test-support/test-agent.js";
import { createAgentHub, type AgentHub } from "./agent-hub.js";

describeEachEngine("hub transactions", (engine) => {
  let hub: AgentHub | undefined;
  let store: Store | undefined;
  afterEach(() => {
    hub?.close();
    store?.close();
    hub = undefined;
    store = undefined;
  });

  const start = async () => {
    const options = await engine.freshStoreOptions();
    store = createStore(options);
    hub = createAgentHub({
      store,
      metrics: createMetrics(store),
      logger: pino({ level: "silent" }),
      authenticate: tokenAuthenticator("test-join-token-0123456789"),
      leaseTtlMs: 3000,
      heartbeatIntervalMs: 200,
      reconcileGraceMs: 300,
    });
    return { store, hub, options };
  };

  it("a batch commits what it wrote", async () => {
    const { store, hub } = await start();
    expect(hub.batch(() => (store.setSetting("k", "v"), 42))).toBe(42);
    expect(store.getSetting("k")).toBe("v");
  });

  it.skipIf(engine.engine !== "postgres")("a batch that loses a serialization conflict fails once instead of running again", async () => {
    const { store, hub, options } = await start();
    store.setSetting("a", "0");
    store.setSetting("b", "0");
    const other = createPostgresDatabase({ url: options.postgresUrl! });
    try {
      let runs = 0;
      expect(() =>
        hub.batch(() => {
          runs += 1;
          // This transaction reads a; the other replica reads b, writes a and commits; this one
          // then writes b: a write skew, which SERIALIZABLE refuses to this one (40001).
          store.getSetting("a");
          other.transaction(() => {
            other.prepare("SELECT value FROM settings WHERE key = 'b'").get();
            other.prepare("UPDATE settings SET value = 'other' WHERE key = 'a'").run();
          })();
          store.setSetting("b", "hub");
        }),
      ).toThrow(/conflicted with another writer/);
      expect(runs).toBe(1);
      expect(store.getSetting("a")).toBe("other");
      expect(store.getSetting("b")).toBe("0");
    } finally {
      other.close();
    }
  });
});
