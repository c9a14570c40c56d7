// `tollgate spend --team NAME [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--url URL] [--json]`: asks a
// running gateway's admin API (GET /admin/spend, admin key from TOLLGATE_ADMIN_KEY) for a team's
// spend and prints it by UTC day with totals. The URL defaults to the config's server address
// (as `serve` would read it), else http://127.0.0.1:8080.
import { parseArgs } from 'node:util';
import dotenv from 'dotenv';
import { DEFAULT_SERVER } from '../config/defaults.js';
import type { SpendReport, SpendTotals } from './spend-report.js';

const USAGE = `usage: tollgate spend --team NAME [--from YYYY-MM-DD] [--to YYYY-MM-DD]
                      [--key ID | --model NAME | --feature NAME] [--url URL] [--config PATH] [--json]
  Spend of a team by UTC day (default: the 30 days up to today), from a running gateway's admin API.
  The admin key is read from TOLLGATE_ADMIN_KEY; the URL defaults to the config's server address.
`;

export interface SpendCliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** The environment; when absent, .env is loaded into process.env as `serve` does. */
  env?: NodeJS.ProcessEnv;
  /** Sets the process's exit code (2: bad arguments, 1: the request failed). */
  exit(code: number): void;
}

const processIo: SpendCliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  exit: (code) => {
    process.exitCode = code;
  },
};

const REQUEST_TIMEOUT_MS = 30_000;

export async function runSpendCli(argv: string[], io: SpendCliIo = processIo): Promise<void> {
  const fail = (code: number, message: string): void => {
    io.stderr(`tollgate spend: ${message}\n${code === 2 ? USAGE : ''}`);
    io.exit(code);
  };
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        team: { type: 'string', short: 't' },
        from: { type: 'string' },
        to: { type: 'string' },
        key: { type: 'string' },
        model: { type: 'string' },
        feature: { type: 'string' },
        url: { type: 'string' },
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    return fail(2, err instanceof Error ? err.message : String(err));
  }
  if (values.help) {
    io.stdout(USAGE);
    return;
  }
  if (!values.team) return fail(2, '--team NAME is required');
  let env = io.env;
  if (env === undefined) {
    dotenv.config({ quiet: true });
    env = process.env;
  }
  const adminKey = env.TOLLGATE_ADMIN_KEY;
  if (!adminKey) return fail(2, "set TOLLGATE_ADMIN_KEY to the gateway's admin key");

  let base: string;
  try {
    base = values.url ?? (await urlFromConfig(values.config, env));
  } catch (err) {
    return fail(1, err instanceof Error ? err.message : String(err));
  }
  const url = new URL('/admin/spend', base);
  for (const name of ['team', 'from', 'to', 'key', 'model', 'feature'] as const) {
    const v = values[name];
    if (v !== undefined) url.searchParams.set(name, v);
  }

  let response: Response;
  try {
    response = await fetch(url, {
      headers: { authorization: `Bearer ${adminKey}`, accept: 'application/json' },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    return fail(1, `could not reach the gateway at ${url.origin} (${cause}); is it running? (--url URL)`);
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return fail(1, `${url.origin} answered ${response.status} with a body that is not JSON`);
  }
  if (!response.ok) {
    const e = (body as { error?: { message?: string; code?: string } }).error;
    const hint = response.status === 404 && e?.code === 'unknown_url' ? ' (is the admin API on there?)' : '';
    return fail(1, `${response.status} ${e?.code ?? ''}: ${e?.message ?? text.slice(0, 200)}${hint}`);
  }
  io.stdout(values.json ? `${JSON.stringify(body, null, 2)}\n` : formatSpendTable(body as SpendReport));
}

/** The gateway's address from the config `serve` would read; loopback for a wildcard host. */
async function urlFromConfig(path: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  // Imported here: the loader compiles the config schema on import, which --url does not need.
  const { loadConfig } = await import('../config/load.js');
  let server = DEFAULT_SERVER;
  try {
    server = loadConfig({ path, env }).server;
  } catch (err) {
    if (path !== undefined) throw err;
    // No readable config: the default address, as a gateway started without one listens on.
  }
  if (server.port === 0) throw new Error('the config listens on port 0 (any port): pass --url');
  const host = ['0.0.0.0', '::', ''].includes(server.host) ? '127.0.0.1' : server.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${server.port}`;
}

const int = (n: number): string => n.toLocaleString('en-US');
const usd = (n: number): string => n.toFixed(6);

/** A table by day plus a total line, columns right-aligned under their headers. */
export function formatSpendTable(report: SpendReport): string {
  const header = ['date', 'requests', 'prompt tokens', 'completion tokens', 'cost USD', 'saved USD'];
  const row = (label: string, t: SpendTotals): string[] => [
    label,
    int(t.requests),
    int(t.prompt_tokens),
    int(t.completion_tokens),
    usd(t.cost_usd),
    usd(t.saved_usd),
  ];
  const rows = report.days.map((d) => row(d.date, d));
  const total = row('total', report.total);
  const widths = header.map((h, i) => Math.max(h.length, ...[...rows, total].map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const filter = Object.entries(report.filter ?? {})
    .map(([k, v]) => `, ${k} ${v}`)
    .join('');
  const title = `Spend of team '${report.team ?? 'all'}'${filter}, ${report.from} to ${report.to} (UTC days)`;
  return [
    title,
    '',
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    line(widths.map((w) => '-'.repeat(w))),
    line(total),
    '',
  ].join('\n');
}
