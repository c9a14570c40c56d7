import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  dayOf,
  daysBetween,
  hourOf,
  monthOf,
  periodEnd,
  periodNames,
  periodOf,
  weekOf,
} from '../../../src/accounting/periods.js';

const at = (iso: string) => Date.parse(iso);

describe('accounting periods (UTC)', () => {
  it('names days, months and hours in UTC', () => {
    assert.equal(dayOf(at('2026-11-25T23:59:59.999Z')), 'd:2026-11-25');
    assert.equal(dayOf(at('2026-11-26T00:00:00Z')), 'd:2026-11-26');
    assert.equal(monthOf(at('2026-12-31T12:00:00Z')), 'm:2026-12');
    assert.equal(hourOf(at('2026-11-25T07:30:00Z')), 'h:2026-11-25T07');
  });

  it('gives the same names from its per-hour memo, across hour, day, week and month ends', () => {
    // Sunday 2026-11-29 23:59:59.999 UTC, then the next instant: a new hour, day, ISO week
    // (Monday) and, a day later, month.
    const edges = [
      Date.UTC(2026, 10, 29, 23, 59, 59, 999),
      Date.UTC(2026, 10, 30, 0),
      Date.UTC(2026, 11, 1, 0),
    ];
    for (const t of [...edges, edges[0]!, edges[1]! - 1, edges[2]! - 1, edges[2]!]) {
      assert.deepEqual(periodNames(t), {
        hour: hourOf(t),
        day: dayOf(t),
        week: weekOf(t),
        month: monthOf(t),
      });
      assert.equal(periodOf('week', t), weekOf(t));
    }
    assert.equal(periodNames(edges[0]!).week, 'w:2026-W48');
    assert.equal(periodNames(edges[1]!).week, 'w:2026-W49');
    assert.equal(periodNames(edges[2]!).month, 'm:2026-12');
  });

  it('names ISO weeks, including the ones that straddle a new year', () => {
    assert.equal(weekOf(at('2026-11-25T12:00:00Z')), 'w:2026-W48');
    // 2021-01-03 is a Sunday in ISO week 53 of 2020; 2024-12-30 is a Monday in week 1 of 2025.
    assert.equal(weekOf(at('2021-01-03T12:00:00Z')), 'w:2020-W53');
    assert.equal(weekOf(at('2024-12-30T00:00:00Z')), 'w:2025-W01');
    assert.equal(weekOf(at('2026-01-01T00:00:00Z')), 'w:2026-W01');
  });

  it('ends a period at the next UTC boundary', () => {
    const t = at('2026-11-25T13:00:00Z'); // a Wednesday
    assert.equal(new Date(periodEnd('day', t)).toISOString(), '2026-11-26T00:00:00.000Z');
    assert.equal(new Date(periodEnd('week', t)).toISOString(), '2026-11-30T00:00:00.000Z');
    assert.equal(new Date(periodEnd('month', t)).toISOString(), '2026-12-01T00:00:00.000Z');
    assert.equal(
      new Date(periodEnd('week', at('2026-11-30T00:00:00Z'))).toISOString(),
      '2026-12-07T00:00:00.000Z',
    );
  });

  it('lists the days of a range, bounded', () => {
    assert.deepEqual(daysBetween('2026-02-27', '2026-03-01'), ['2026-02-27', '2026-02-28', '2026-03-01']);
    assert.equal(daysBetween('2026-01-01', '2030-01-01', 10).length, 10);
    assert.deepEqual(daysBetween('2026-03-02', '2026-03-01'), []);
  });
});
