// Bytes -> server-sent events, per the WHATWG EventSource parsing rules
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
// lines end in CRLF, LF or CR; `data:` lines of one event are joined with '\n'; a blank line
// dispatches; lines starting with ':' are comments; one optional space after the colon is
// dropped. No provider knowledge lives here.

export interface SseEvent {
  /** The `event:` field, if any (Anthropic names its events; OpenAI does not). */
  event: string | undefined;
  data: string;
}

export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event: string | undefined = undefined;
  private readonly decoder = new TextDecoder('utf-8');
  /** Set when the previous chunk ended in CR, so a following LF is not a second line end. */
  private pendingCr = false;

  /** Feeds bytes; returns the events completed by them. */
  push(bytes: Uint8Array | string): SseEvent[] {
    let text = typeof bytes === 'string' ? bytes : this.decoder.decode(bytes, { stream: true });
    // An empty chunk (or one that only starts a multi-byte character) must not forget a pending CR:
    // its LF, arriving next, would otherwise count as a blank line and dispatch the event early.
    if (text.length === 0) return [];
    if (this.pendingCr && text.startsWith('\n')) text = text.slice(1);
    this.pendingCr = false;
    const out: SseEvent[] = [];
    let buf = this.buffer + text;
    let start = 0;
    for (;;) {
      const lf = buf.indexOf('\n', start);
      const cr = buf.indexOf('\r', start);
      let end: number;
      let next: number;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        end = cr;
        if (cr + 1 === buf.length) {
          // CR at the very end: the LF of a CRLF may be in the next push.
          this.pendingCr = true;
          next = cr + 1;
        } else next = buf[cr + 1] === '\n' ? cr + 2 : cr + 1;
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else break;
      this.line(buf.slice(start, end), out);
      start = next;
    }
    buf = buf.slice(start);
    this.buffer = buf;
    return out;
  }

  /** Call at end of input: an unterminated last event is not dispatched (per the spec). */
  get pending(): boolean {
    return this.buffer.length > 0 || this.data.length > 0;
  }

  private line(line: string, out: SseEvent[]): void {
    if (line.length === 0) {
      if (this.data.length > 0) out.push({ event: this.event, data: this.data.join('\n') });
      this.data = [];
      this.event = undefined;
      return;
    }
    if (line.charCodeAt(0) === 58 /* ':' */) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32 /* ' ' */) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    // `id` and `retry` do not matter to a relay of LLM streams.
  }
}
