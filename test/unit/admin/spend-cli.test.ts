// `tollgate spend` without a gateway: the table it prints from a report, and the argument and
// environment problems it refuses before calling anything (exit code 2, usage on stderr).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSpendTable, runSpendCli } from '../../../src/admin/spend-cli.js';
import type { SpendReport, SpendTotals } from '../../../src/admin/spend-report.js';
import { captureCli as capture } from './helpers.js';

const totals = (over: Partial<SpendTotals>): SpendTotals => ({
  requests: 0,
  tokens: 0,
  prompt_tokens: 0,
  completion_tokens: 0,
  cached_tokens: 0,
  reasoning_tokens: 0,
  cost_usd: 0,
  saved_usd: 0,
  ...over,
});

describe('tollgate spend', () => {
  it('prints one row per day and a total, numbers aligned under their headers', () => {
    const report: SpendReport = {
      object: 'spend',
      team: 'search',
      from: '2026-11-01',
      to: '2026-11-02',
      filter: null,
      days: [
        {
          date: '2026-11-01',
          ...totals({ requests: 1234, prompt_tokens: 1_500_000, completion_tokens: 20, cost_usd: 12.5 }),
        },
        { date: '2026-11-02', ...totals({ requests: 1, saved_usd: 0.000123 }) },
      ],
      total: totals({
        requests: 1235,
        prompt_tokens: 1_500_000,
        completion_tokens: 20,
        cost_usd: 12.5,
        saved_usd: 0.000123,
      }),
    };
    const lines = formatSpendTable(report).split('\n');
    assert.equal(lines[0], "Spend of team 'search', 2026-11-01 to 2026-11-02 (UTC days)");
    assert.match(lines[2]!, /^date\s+requests\s+prompt tokens\s+completion tokens\s+cost USD\s+saved USD$/);
    const row = lines.find((l) => l.startsWith('2026-11-01'))!;
    assert.match(row, /^2026-11-01\s+1,234\s+1,500,000\s+20\s+12\.500000\s+0\.000000$/);
    assert.match(
      lines.find((l) => l.startsWith('total'))!,
      /1,235\s+1,500,000\s+20\s+12\.500000\s+0\.000123$/,
    );
    // Right-aligned: every data line ends at the header's width.
    const width = lines[2]!.length;
    for (const l of lines.slice(3).filter(Boolean)) assert.equal(l.length, width, l);
  });

  it('names a filter in the title', () => {
    const report: SpendReport = {
      object: 'spend',
      team: 'search',
      from: '2026-11-01',
      to: '2026-11-01',
      filter: { model: 'gpt-4o' },
      days: [{ date: '2026-11-01', ...totals({}) }],
      total: totals({}),
    };
    assert.match(formatSpendTable(report), /^Spend of team 'search', model gpt-4o, 2026-11-01/);
  });

  it('requires --team and the admin key, and refuses unknown options, with exit code 2', async () => {
    let c = capture({ TOLLGATE_ADMIN_KEY: 'x' });
    await runSpendCli(['--url', 'http://127.0.0.1:1'], c.io);
    assert.equal(c.out.code, 2);
    assert.match(c.out.stderr, /--team NAME is required/);
    assert.match(c.out.stderr, /usage: tollgate spend/);

    c = capture({});
    await runSpendCli(['--team', 'search', '--url', 'http://127.0.0.1:1'], c.io);
    assert.equal(c.out.code, 2);
    assert.match(c.out.stderr, /TOLLGATE_ADMIN_KEY/);

    c = capture({ TOLLGATE_ADMIN_KEY: 'x' });
    await runSpendCli(['--team', 'search', '--since', '2026-01-01'], c.io);
    assert.equal(c.out.code, 2);
    assert.match(c.out.stderr, /--since/);
    assert.equal(c.out.stdout, '');
  });

  it('prints its usage for --help', async () => {
    const c = capture();
    await runSpendCli(['--help'], c.io);
    assert.equal(c.out.code, 0);
    assert.match(c.out.stdout, /^usage: tollgate spend --team NAME/);
  });
});
