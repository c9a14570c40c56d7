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
  /** The event's data lines so far: one string for the usual single line, an array past it. */
  private data: string | string[] | undefined = undefined;
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
    if (this.pendingCr && text.charCodeAt(0) === 10 /* \n */) text = text.slice(1);
    this.pendingCr = false;
    const out: SseEvent[] = [];
    const buf = this.buffer.length > 0 ? this.buffer + text : text;
    // LF-only streams (every provider's) skip the CR search on each line.
    const hasCr = buf.includes('\r');
    let start = 0;
    for (;;) {
      const lf = buf.indexOf('\n', start);
      let end: number;
      let next: number;
      const cr = hasCr ? buf.indexOf('\r', start) : -1;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        end = cr;
        if (cr + 1 === buf.length) {
          // CR at the very end: the LF of a CRLF may be in the next push.
          this.pendingCr = true;
          next = cr + 1;
        } else next = buf.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else break;
      this.line(buf, start, end, out);
      start = next;
    }
    this.buffer = start === 0 ? buf : buf.slice(start);
    return out;
  }

  /** Call at end of input: an unterminated last event is not dispatched (per the spec). */
  get pending(): boolean {
    return this.buffer.length > 0 || this.data !== undefined;
  }

  /** The line buf[start, end), read in place: only its value is copied out. */
  private line(buf: string, start: number, end: number, out: SseEvent[]): void {
    if (start === end) {
      const data = this.data;
      if (data !== undefined)
        out.push({ event: this.event, data: typeof data === 'string' ? data : data.join('\n') });
      this.data = undefined;
      this.event = undefined;
      return;
    }
    const first = buf.charCodeAt(start);
    if (first === 58 /* ':' */) return;
    let valueAt: number;
    let field: string;
    if (first === 100 /* d */ && buf.startsWith('data:', start)) {
      field = 'data';
      valueAt = start + 5;
    } else {
      const colon = buf.indexOf(':', start);
      const hasColon = colon !== -1 && colon < end;
      field = buf.slice(start, hasColon ? colon : end);
      valueAt = hasColon ? colon + 1 : end;
    }
    if (valueAt < end && buf.charCodeAt(valueAt) === 32 /* ' ' */) valueAt++;
    if (field === 'data') {
      const value = buf.slice(valueAt, end);
      const data = this.data;
      if (data === undefined) this.data = value;
      else if (typeof data === 'string') this.data = [data, value];
      else data.push(value);
    } else if (field === 'event') this.event = buf.slice(valueAt, end);
    // `id` and `retry` do not matter to a relay of LLM streams.
  }
}
