/** A minimal server-sent events reader over fetch, for `firedrill run --follow`. */
import { ServerUnreachableError } from "./errors.js";

/** One server-sent event. */
export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/**
 * Reads `url` as an event stream, calling `onEvent` for each event, until the server ends the
 * stream or `onEvent` returns "stop".
 */
export async function readEventStream(url: string, onEvent: (event: SseEvent) => void | "stop", signal?: AbortSignal): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { headers: { accept: "text/event-stream" }, ...(signal ? { signal } : {}) });
  } catch (err) {
    throw new ServerUnreachableError(new URL(url).origin, (err as Error).message, { cause: err });
  }
  if (!res.ok || !res.body) throw new Error(`the event stream ${url} answered HTTP ${res.status}`);
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
