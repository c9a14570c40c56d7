// What a stream actually delivered, for billing a stream that ended without a usage chunk (the
// client left, the upstream failed): the text of content, refusal and tool-call argument
// deltas, taken from each chunk's JSON text as it passes. No parse per chunk: an unescaped
// `"content":"` cannot occur inside a JSON string, so indexOf finds exactly the members, and the
// escaped value is kept as is until the end, when it is unescaped once.
const NEEDLES = ['"content":"', '"refusal":"', '"arguments":"'];
const FINISH = '"finish_reason":"';

export class DeliveredText {
  private readonly parts: string[] = [];
  /** The last finish_reason seen, if any. */
  finishReason: string | undefined;

  add(data: string): void {
    for (const needle of NEEDLES) {
      let i = data.indexOf(needle);
      while (i >= 0) {
        const start = i + needle.length;
        const end = closingQuote(data, start);
        if (end < 0) break;
        if (end > start) this.parts.push(data.slice(start, end));
        i = data.indexOf(needle, end);
      }
    }
    const f = data.indexOf(FINISH);
    if (f >= 0) {
      const start = f + FINISH.length;
      const end = closingQuote(data, start);
      if (end > start) this.finishReason = data.slice(start, end);
    }
  }

  /** Everything delivered, unescaped. */
  text(): string {
    if (this.parts.length === 0) return '';
    try {
      return JSON.parse(`"${this.parts.join('')}"`) as string;
    } catch {
      // Only a malformed chunk could get here; its escaped text is still about the right size.
      return this.parts.join('');
    }
  }
}

/** Index of the quote that ends the JSON string whose content starts at `from`; -1 if none. */
function closingQuote(s: string, from: number): number {
  let i = s.indexOf('"', from);
  while (i >= 0) {
    let backslashes = 0;
    for (let j = i - 1; j >= from && s.charCodeAt(j) === 0x5c; j--) backslashes++;
    if (backslashes % 2 === 0) return i;
    i = s.indexOf('"', i + 1);
  }
  return -1;
}
