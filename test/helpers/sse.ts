// Reads an SSE response body event by event, recording when each event arrived.
export interface TimedEvent {
  data: string;
  at: number;
}

export async function readSse(
  body: ReadableStream<Uint8Array>,
  onEvent?: (e: TimedEvent) => void,
): Promise<TimedEvent[]> {
  const decoder = new TextDecoder();
  const events: TimedEvent[] = [];
  let buf = '';
  for await (const bytes of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(bytes, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      const e = { data, at: Date.now() };
      events.push(e);
      onEvent?.(e);
    }
  }
  return events;
}
