/**
 * Test support (not part of the package's build): reads a server-sent event stream of the API, as
 * the console does, with an API token.
 */

/** One event: its name and its data parsed as JSON. */
export interface SseEvent {
  event: string;
  data: any;
}

/**
 * Reads the event stream at `url` with `token` as bearer until its `end` event (or until the stream
 * closes), calling `onEvent` with each event; returns them all. Keep-alive comments are skipped.
 * Throws when the answer is not a 200 event stream, or after `timeoutMs`.
 */
export async function readSse(url: string, token: string, onEvent: (e: SseEvent) => void = () => {}, timeoutMs = 60_000): Promise<SseEvent[]> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
  const type = res.headers.get("content-type");
  if (res.status !== 200 || type !== "text/event-stream") {
    throw new Error(`GET ${url} answered HTTP ${res.status} (${type}), not a 200 text/event-stream: ${(await res.text()).slice(0, 500)}`);
  }
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data === "") continue; // a keep-alive comment
      const e = { event, data: JSON.parse(data) };
      events.push(e);
      onEvent(e);
      if (event === "end") return events;
    }
  }
  return events;
}
