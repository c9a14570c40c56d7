// What a stream actually delivered, for billing a stream that ended without a usage chunk (the
// client left, the upstream failed): the text of content, refusal and tool-call argument
// deltas. While the stream runs, a chunk costs one array slot (its text is kept, not copied or
// parsed); only a stream that needs the text pays for it, at the end. No parse even then: an
// unescaped `"content":"` cannot occur inside a JSON string, so indexOf finds exactly the
// members, and the escaped values are joined and unescaped once.
const NEEDLES = ['"content":"', '"refusal":"', '"arguments":"'];
const FINISH = '"finish_reason":"';

export class DeliveredText {
  private readonly chunks: string[] = [];
  /** The last finish_reason seen, if any. */
  finishReason: string | undefined;

  add(data: string): void {
    this.chunks.push(data);
    const f = data.indexOf(FINISH);
    if (f >= 0) {
      const start = f + FINISH.length;
      const end = closingQuote(data, start);
      if (end > start) this.finishReason = data.slice(start, end);
    }
  }

  /** Everything delivered, unescaped. */
  text(): string {
    const parts: string[] = [];
    for (const data of this.chunks) collect(data, parts);
    if (parts.length === 0) return '';
    try {
      return JSON.parse(`"${parts.join('')}"`) as string;
    } catch {
      // Only a malformed chunk could get here; its escaped text is still about the right size.
      return parts.join('');
    }
  }
}

/** The escaped values of the content, refusal and arguments members of one chunk's JSON text. */
function collect(data: string, parts: string[]): void {
  for (const needle of NEEDLES) {
    let i = data.indexOf(needle);
    while (i >= 0) {
      const start = i + needle.length;
      const end = closingQuote(data, start);
      if (end < 0) break;
      if (end > start) parts.push(data.slice(start, end));
      i = data.indexOf(needle, end);
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
