/**
 * Test and bench support (not part of the package's build): a local HTTP endpoint for an `http`
 * stop condition to probe, which the test flips between healthy (200 "ok") and broken (500).
 */
import { createServer } from "node:http";

/** The endpoint: its URL, a switch for the status it answers, and close(). */
export interface HealthEndpoint {
  /** `http://127.0.0.1:<port>/health` (any path answers the same). */
  url: string;
  /** The status every request answers from now on (200 "ok", anything else "broken"). */
  setStatus(status: number): void;
  /** Closes the server and every connection a prober keeps open. */
  close(): Promise<void>;
}

/** Starts a health endpoint on 127.0.0.1, on an ephemeral port, answering 200. */
export async function healthEndpoint(): Promise<HealthEndpoint> {
  let status = 200;
  const server = createServer((_req, res) => {
    res.statusCode = status;
    res.end(status === 200 ? "ok" : "broken");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/health`,
    setStatus: (s) => {
      status = s;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
