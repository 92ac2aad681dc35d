/** A minimal server-sent events reader over undici's fetch, for `firedrill run --follow`. */
import { fetch } from "undici";
import type { RequestInit, Response } from "undici";
import { ServerUnreachableError } from "./errors.js";
import { connectionFor } from "./connection.js";
import type { Connection } from "./connection.js";

/** One server-sent event. */
export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/**
 * Reads `url` as an event stream, calling `onEvent` for each event, until the server ends the
 * stream or `onEvent` returns "stop". The request carries the token and TLS trust of `connection`,
 * by default those of the API client made for the server `url` is on.
 */
export async function readEventStream(
  url: string,
  onEvent: (event: SseEvent) => void | "stop",
  signal?: AbortSignal,
  connection: Connection | undefined = connectionFor(url),
): Promise<void> {
  const init: RequestInit = { headers: { ...connection?.headers, accept: "text/event-stream" } };
  if (signal) init.signal = signal;
  if (connection?.dispatcher) init.dispatcher = connection.dispatcher;
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (err) {
    if (connection) throw connection.fetchError(err);
    throw new ServerUnreachableError(new URL(url).origin, (err as Error).message, { cause: err });
  }
  if (!res.ok || !res.body) {
    const text = await res.text().catch(() => "");
    if (connection && !res.ok) throw connection.httpError(res, "GET", new URL(url).pathname, text);
    throw new Error(`the event stream ${url} answered HTTP ${res.status}`);
  }
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let sep: number;
    while ((sep = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, sep);
      buffer = buffer.slice(sep + 2);
      const event: SseEvent = { event: "message", data: "" };
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.event = value;
        else if (field === "data") data.push(value);
        else if (field === "id") event.id = value;
      }
      if (data.length === 0) continue;
      event.data = data.join("\n");
      if (onEvent(event) === "stop") return;
    }
  }
}
