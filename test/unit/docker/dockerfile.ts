// A small Dockerfile reader for the packaging tests: enough of the syntax (comments, line
// continuations, global ARG defaults in FROM, stages) to check what the image does without a
// Docker engine, which the test machines do not have.
import { readFileSync } from 'node:fs';

export const REPO_ROOT = new URL('../../../', import.meta.url);

export function readRepoFile(name: string): string {
  return readFileSync(new URL(name, REPO_ROOT), 'utf8');
}

export interface Instruction {
  /** Upper-cased keyword: FROM, RUN, COPY, ... */
  keyword: string;
  /** Everything after the keyword, continuations joined with a space. */
  args: string;
}

export interface Stage {
  /** Image named by FROM, with global ARG defaults substituted. */
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

export function parseInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    // Docker drops comment lines and blank lines, even inside a continued instruction.
    if (line.startsWith('#') || line === '') continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (full === '') continue;
    const match = /^(\S+)\s*(.*)$/s.exec(full);
    if (match) out.push({ keyword: match[1]!.toUpperCase(), args: match[2]!.trim() });
  }
  if (pending.trim() !== '') throw new Error('Dockerfile ends inside a line continuation');
  return out;
}

/** Splits the Dockerfile into its stages; ARGs declared before the first FROM fill `${NAME}` in FROM. */
export function parseDockerfile(text: string): Stage[] {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of parseInstructions(text)) {
    if (ins.keyword === 'FROM') {
      const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith('--'));
      const image = (parts[0] ?? '').replace(
        /\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g,
        (_m, name: string) => globalArgs.get(name) ?? '',
      );
      const name = parts[1]?.toUpperCase() === 'AS' ? parts[2] : undefined;
      stages.push({ image, name, instructions: [] });
      continue;
    }
    const current = stages.at(-1);
    if (current) {
      current.instructions.push(ins);
    } else if (ins.keyword === 'ARG') {
      const [key = '', value = ''] = ins.args.split('=', 2);
      globalArgs.set(key.trim(), value.trim());
    }
  }
  return stages;
}

/** `ENV A=1 B=2` (and the legacy `ENV A 1`) as key/value pairs; quotes around a value are dropped. */
export function envOf(stage: Stage): Map<string, string> {
  const env = new Map<string, string>();
  for (const ins of stage.instructions.filter((i) => i.keyword === 'ENV')) {
    if (!ins.args.includes('=')) {
      const [key = '', ...rest] = ins.args.split(/\s+/);
      env.set(key, rest.join(' '));
      continue;
    }
    for (const m of ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S*)/g)) {
      env.set(m[1]!, m[2]!.replace(/^(["'])(.*)\1$/, '$2'));
    }
  }
  return env;
}

/** The argument of an exec-form instruction (`CMD ["a","b"]`), or undefined for shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  try {
    const parsed: unknown = JSON.parse(args);
    return Array.isArray(parsed) && parsed.every((p) => typeof p === 'string') ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The command of `HEALTHCHECK [--options] CMD ...` in exec form, or undefined. */
export function healthcheckCommand(args: string): string[] | undefined {
  const match = /^(?:--\S+\s+)*CMD\s+(.*)$/s.exec(args);
  return match ? execForm(match[1]!.trim()) : undefined;
}
