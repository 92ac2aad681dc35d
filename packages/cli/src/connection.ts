/** How the CLI reaches one server: headers and TLS trust, shared by the JSON client and event streams. */
import type { Dispatcher, Response } from "undici";
import type { ApiRequestError } from "./errors.js";

/** How to reach a server: the headers and the dispatcher (TLS trust) every request to it uses. */
export interface Connection {
  /** The server's base URL, without a trailing slash. */
  server: string;
  /** Sent with every request (accept, authorization). */
  headers: Record<string, string>;
  /** Trusts only the pinned CA; absent for the system's trusted CAs. */
  dispatcher?: Dispatcher;
  /** Turns a failed fetch into the error to throw. */
  fetchError(err: unknown): Error;
  /** Turns an error response into the error to throw. */
  httpError(res: Response, method: string, path: string, text: string): ApiRequestError;
}

/** Connections of the clients made in this process, newest first. */
const connections: Connection[] = [];

/** Makes `connection` the one used for URLs under its server. */
export function registerConnection(connection: Connection): void {
  const at = connections.findIndex((c) => c.server === connection.server);
  if (at >= 0) connections.splice(at, 1);
  connections.unshift(connection);
}

/** The connection registered for the server `url` is under; undefined when there is none. */
export function connectionFor(url: string): Connection | undefined {
  return connections.find((c) => url === c.server || url.startsWith(`${c.server}/`));
}
