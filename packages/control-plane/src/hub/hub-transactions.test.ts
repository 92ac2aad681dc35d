/**
 * The hub's transactions on PostgreSQL: READ COMMITTED (plain transactions), so another
 * replica's concurrent writes do not fail them. A hub batch or slice cannot be re-run (it consumed
 * its queue, its handlers touched memory, its writes to streams wait for the commit): should the
 * engine re-run one after a deadlock, it fails instead of running twice. A real cluster, two
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

  it.skipIf(engine.engine !== "postgres")("a batch is READ COMMITTED on PostgreSQL: another replica writing meanwhile does not fail it, and it runs once", async () => {
    // Each replica writes the events of the agents it holds; under SERIALIZABLE their batches
    // failed against each other's predicate locks under load (and a failed slice loses the
    // agents' reports). READ COMMITTED takes row locks only: the same write skew commits.
    const { store, hub, options } = await start();
    store.setSetting("a", "0");
    store.setSetting("b", "0");
    const other = createPostgresDatabase({ url: options.postgresUrl! });
    try {
      let runs = 0;
      hub.batch(() => {
        runs += 1;
        store.getSetting("a");
        other.transaction(() => {
          other.prepare("SELECT value FROM settings WHERE key = 'b'").get();
          other.prepare("UPDATE settings SET value = 'other' WHERE key = 'a'").run();
        })();
        store.setSetting("b", "hub");
      });
      expect(runs).toBe(1);
      expect(store.getSetting("a")).toBe("other");
      expect(store.getSetting("b")).toBe("hub");
    } finally {
      other.close();
    }
  });
});
