import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { orderCandidates, type RoutingStats } from '../../../src/pipeline/routing/strategies.js';
import type { Deployment } from '../../../src/pipeline/types.js';

/** mulberry32: a small seeded PRNG, so the statistical tests are repeatable. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const dep = (id: string, extra: Partial<Deployment> = {}): Deployment => ({
  id,
  provider: id,
  model: 'm',
  ...extra,
});

const stats = (
  s: Partial<Record<'inFlight' | 'ttft' | 'quota', Record<string, number>>> = {},
): RoutingStats => ({
  inFlight: (id) => s.inFlight?.[id] ?? 0,
  ttftMs: (id) => s.ttft?.[id],
  quotaLeft: (id) => s.quota?.[id],
});

const ids = (ds: Deployment[]): string[] => ds.map((d) => d.id);

describe('routing strategies', () => {
  const a = dep('a');
  const b = dep('b');
  const c = dep('c');

  it('priority keeps the configured order', () => {
    assert.deepEqual(ids(orderCandidates([a, b, c], 'priority', stats())), ['a', 'b', 'c']);
  });

  it('weighted picks the first candidate in proportion to its weight (seeded, 20,000 draws)', () => {
    const heavy = dep('heavy', { weight: 3 });
    const light = dep('light', { weight: 1 });
    const random = seeded(42);
    let heavyFirst = 0;
    const draws = 20_000;
    for (let i = 0; i < draws; i++) {
      const order = orderCandidates([heavy, light], 'weighted', stats(), random);
      if (order[0] === heavy) heavyFirst++;
      assert.equal(order.length, 2, 'every candidate stays as a fallback');
    }
    // Expected 0.75; 4 standard deviations at n = 20,000 is about ±0.012.
    assert.ok(Math.abs(heavyFirst / draws - 0.75) < 0.012, String(heavyFirst / draws));
  });

  it('weighted never picks a weight-0 candidate first while another has weight', () => {
    const random = seeded(7);
    for (let i = 0; i < 1000; i++) {
      assert.equal(orderCandidates([dep('z', { weight: 0 }), a], 'weighted', stats(), random)[0], a);
    }
  });

  it('least-in-flight prefers the least busy deployment, ties in configured order', () => {
    assert.deepEqual(
      ids(orderCandidates([a, b, c], 'least-in-flight', stats({ inFlight: { a: 5, b: 1, c: 1 } }))),
      ['b', 'c', 'a'],
    );
  });

  it('lowest-latency tries unmeasured deployments first, then the fastest', () => {
    assert.deepEqual(ids(orderCandidates([a, b, c], 'lowest-latency', stats({ ttft: { a: 300, c: 120 } }))), [
      'b',
      'c',
      'a',
    ]);
  });

  it('most-quota prefers the deployment with the most of its quota left', () => {
    assert.deepEqual(
      ids(orderCandidates([a, b, c], 'most-quota', stats({ quota: { a: 0.1, b: 0.9, c: 0.5 } }))),
      ['b', 'c', 'a'],
    );
  });

  it('cheapest orders by blended price, unpriced last', () => {
    const pricey = dep('pricey', { prices: { inputPerMillion: 5, outputPerMillion: 15 } });
    const cheap = dep('cheap', { prices: { inputPerMillion: 0.15, outputPerMillion: 0.6 } });
    assert.deepEqual(ids(orderCandidates([a, pricey, cheap], 'cheapest', stats())), ['cheap', 'pricey', 'a']);
  });
});

describe('deployment stats', () => {
  it('counts flights, averages time to first token and keeps the quota share', async () => {
    const { DeploymentStats } = await import('../../../src/pipeline/routing/stats.js');
    const s = new DeploymentStats();
    const end1 = s.start('a');
    const end2 = s.start('a');
    assert.equal(s.inFlight('a'), 2);
    end1();
    end1();
    assert.equal(s.inFlight('a'), 1);
    end2();
    assert.equal(s.inFlight('a'), 0);
    s.recordTtft('a', 100);
    s.recordTtft('a', 200);
    assert.equal(s.ttftMs('a'), 120);
    s.recordQuota('a', 25, 100);
    assert.equal(s.quotaLeft('a'), 0.25);
    assert.equal(s.quotaLeft('b'), undefined);
  });
});
