// Bounds the distinct values one label may take, so a client sending made-up model names to a
// wildcard route (or an upstream inventing error codes) cannot grow the metrics without limit.
// Values known from config always get their own label; others do while there is room, then
// become "other" for the life of the process.

/** The label value for anything past the cap (or longer than MAX_LABEL_LENGTH). */
export const OTHER = 'other';
/** The label value when there is no value (an unauthenticated request has no team). */
export const NONE = 'none';
/** Longer values are reported as OTHER: a label is a name, not a payload. */
export const MAX_LABEL_LENGTH = 128;

export class LabelCap {
  private readonly known: ReadonlySet<string>;
  private readonly seen = new Set<string>();

  /** `max` bounds the values seen at run time; `known` values never count against it. */
  constructor(
    private readonly max: number,
    known: Iterable<string> = [],
  ) {
    this.known = new Set(known);
  }

  value(raw: string | undefined): string {
    if (raw === undefined || raw === '') return NONE;
    if (this.known.has(raw) || this.seen.has(raw)) return raw;
    if (raw.length > MAX_LABEL_LENGTH || this.seen.size >= this.max) return OTHER;
    this.seen.add(raw);
    return raw;
  }
}
