// A small reader of HAProxy's configuration format for the packaging tests: sections and their
// directive lines, split into words, and HAProxy's time values. Enough for docker/haproxy.cfg
// (no quoting, no conditional blocks); haproxy itself is not on the test machines.

export interface Section {
  /** global, defaults, frontend, backend, listen, resolvers, ... */
  kind: string;
  name: string | undefined;
  /** One entry per directive, split on whitespace, comments removed. */
  lines: string[][];
}

const SECTION_KEYWORDS = new Set([
  'global',
  'defaults',
  'frontend',
  'backend',
  'listen',
  'resolvers',
  'peers',
  'userlist',
  'mailers',
  'program',
  'http-errors',
  'ring',
  'cache',
]);

export function parseHaproxyConfig(textIn: string): Section[] {
  const sections: Section[] = [];
  for (const raw of textIn.split(/\r?\n/)) {
    const words = raw.replace(/#.*$/, '').trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) continue;
    if (SECTION_KEYWORDS.has(words[0]!)) {
      sections.push({ kind: words[0]!, name: words[1], lines: [] });
      continue;
    }
    const current = sections.at(-1);
    if (!current) throw new Error(`directive outside any section: ${raw.trim()}`);
    current.lines.push(words);
  }
  return sections;
}

export function section(sections: Section[], kind: string, name?: string): Section {
  const found = sections.filter((s) => s.kind === kind && (name === undefined || s.name === name));
  if (found.length !== 1)
    throw new Error(`expected one '${kind}${name ? ` ${name}` : ''}' section, got ${found.length}`);
  return found[0]!;
}

/** Lines of a section that start with these words (`option`, `http-no-delay`). */
export function directives(s: Section, ...prefix: string[]): string[][] {
  return s.lines.filter((l) => prefix.every((p, i) => l[i] === p));
}

/**
 * A directive as it applies in a proxy section: its own line, else the `defaults` section's
 * (what HAProxy does for settings a proxy does not set itself).
 */
export function effective(sections: Section[], proxy: Section, ...prefix: string[]): string[][] {
  const own = directives(proxy, ...prefix);
  if (own.length > 0 || proxy.kind === 'defaults') return own;
  const defaults = sections.filter((s) => s.kind === 'defaults');
  return defaults.length > 0 ? directives(defaults.at(-1)!, ...prefix) : [];
}

/** An HAProxy time (`610s`, `2m`, `500` = ms) in milliseconds. */
export function haproxyTimeMs(value: string): number {
  const m = /^(\d+)(us|ms|s|m|h|d)?$/.exec(value);
  if (!m) throw new Error(`not an HAProxy time: ${value}`);
  const unit = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms']!;
  return Number(m[1]) * unit;
}
