// Shared by the admin tests: the store keys of runtime key records (the `teamKeyRecords` method
// keys.ts is to gain), and writing spend counters the way the accounting stage does.
import type { KeyRecordKeys } from '../../../src/admin/key-records.js';
import type { SpendCliIo } from '../../../src/admin/spend-cli.js';
import { spendIncrements, type SpendRecord } from '../../../src/accounting/spend.js';
import { createKeys, type Keys } from '../../../src/stores/keys.js';
import type { Store } from '../../../src/stores/store.js';

export function recordKeys(prefix = 'tg:'): Keys & KeyRecordKeys {
  const keys = createKeys(prefix);
  return { ...keys, teamKeyRecords: (team) => `${prefix}v1:keys:{t:${team}}` };
}

export function spend(over: Partial<SpendRecord> & Pick<SpendRecord, 'team' | 'keyId'>): SpendRecord {
  return {
    model: 'gpt-4o-mini',
    feature: undefined,
    costMicros: 0,
    savedMicros: 0,
    promptTokens: 0,
    completionTokens: 0,
    cachedTokens: 0,
    reasoningTokens: 0,
    ...over,
  };
}

/** One request's spend at `atMs`, settled into the counters as the accounting stage does. */
export async function recordSpend(
  store: Store,
  keys: Keys,
  record: SpendRecord,
  atMs: number,
): Promise<void> {
  await store.settle(
    keys.teamBudgetLeases(record.team),
    [],
    spendIncrements(keys, record, atMs, false),
    86_400_000 * 400,
  );
}

/** An io for runSpendCli that keeps what it prints and the exit code. */
export function captureCli(env: NodeJS.ProcessEnv = {}) {
  const out = { stdout: '', stderr: '', code: 0 };
  const io: SpendCliIo = {
    stdout: (t) => (out.stdout += t),
    stderr: (t) => (out.stderr += t),
    env,
    exit: (c) => (out.code = c),
  };
  return { io, out };
}
