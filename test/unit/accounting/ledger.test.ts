import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { openLedger } from '../../../src/accounting/ledger.js';

describe('JSONL ledger', () => {
  it('appends one JSON line per record, all of them on close, to a file that may not exist yet', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'ledger-')), 'sub', 'ledger.jsonl');
    const ledger = openLedger(file);
    for (let i = 0; i < 1_000; i++) ledger.append({ reqId: `r${i}`, cost_micros: i });
    ledger.close();
    await new Promise((r) => setTimeout(r, 50));
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 1_000);
    assert.deepEqual(JSON.parse(lines[999]!), { reqId: 'r999', cost_micros: 999 });
  });

  it('appends to what is there (replicas and restarts share a file)', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'ledger-')), 'ledger.jsonl');
    for (const n of [1, 2]) {
      const ledger = openLedger(file);
      ledger.append({ run: n });
      ledger.close();
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(
      readFileSync(file, 'utf8')
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l)),
      [{ run: 1 }, { run: 2 }],
    );
  });
});
