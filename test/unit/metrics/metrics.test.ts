// The Prometheus metrics: exact values read back from the text exposition after a scripted run,
// bounded labels (key ids only when enabled, a cap on model names), cluster aggregation, the
// GET /metrics route, and stop() leaving nothing that keeps the process alive.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import { AggregatorRegistry } from 'prom-client';
import { Metrics, type MetricsOptions, type RequestObservation } from '../../../src/metrics/metrics.js';
import { registerMetricsRoute } from '../../../src/http/routes/metrics.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): { families: Map<string, string>; samples: Sample[] } {
  const families = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) families.set(type[1]!, type[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { families, samples };
}

/** The value of the one sample with exactly these labels; undefined when there is none. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).sort();
  const hits = samples.filter(
    (s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === JSON.stringify(want),
  );
  assert.ok(hits.length <= 1, `${name} ${JSON.stringify(labels)} matched ${hits.length} samples`);
  return hits[0]?.value;
}

async function scrape(m: Metrics) {
  return parse((await m.render()).body);
}

function metrics(options: Partial<MetricsOptions> = {}): Metrics {
  return new Metrics({ keyLabels: false, processMetrics: false, ...options });
}

function request(over: Partial<RequestObservation>): RequestObservation {
  return {
    team: 'alpha',
    model: 'gpt-4o',
    endpoint: 'chat',
    status: 200,
    cache: undefined,
    stream: false,
    latencyMs: 1200,
    ttftMs: undefined,
    errorCode: undefined,
    ...over,
  };
}

const GPT = { id: 'openai/gpt-4o', provider: 'openai' };
const CLAUDE = { id: 'anthropic/claude-sonnet-4', provider: 'anthropic' };

describe('Metrics', () => {
  it('exposes every family with exact values after a scripted sequence of calls', async () => {
    const m = metrics({ pendingSpend: () => 3, droppedSpend: () => 7 });
    // 1. Two misses and a hit for alpha; a failed and a rejected request for beta.
    m.observeRequest(request({ cache: 'MISS', latencyMs: 1200 }));
    m.observeRequest(request({ cache: 'HIT', stream: true, latencyMs: 30, ttftMs: 20 }));
    m.observeRequest(request({ cache: 'MISS', stream: true, latencyMs: 4000, ttftMs: 700 }));
    m.observeRequest(
      request({
        team: 'beta',
        model: 'claude',
        status: 502,
        latencyMs: 9000,
        errorCode: 'upstream_unavailable',
      }),
    );
    m.observeRequest(
      request({ team: 'beta', model: 'claude', status: 429, errorCode: 'rate_limit_exceeded' }),
    );
    // 2. Attempts: two upstream failures, one retry, one fallback; one limit rejection.
    m.upstreamError(CLAUDE.id, 'upstream_server_error');
    m.upstreamError(CLAUDE.id, 'upstream_server_error');
    m.retry(CLAUDE.id);
    m.fallback(CLAUDE.id, GPT.id);
    m.limitRejected('beta', 'tokens');
    // 3. Costs: a priced miss, a hit that saved 1000 µ$, an unknown price, an estimated stream.
    const usage = {
      prompt_tokens: 100,
      completion_tokens: 50,
      total_tokens: 150,
      prompt_tokens_details: { cached_tokens: 20 },
      completion_tokens_details: { reasoning_tokens: 10 },
    };
    const cost = { team: 'alpha', keyId: 'k1', model: 'gpt-4o', deployment: GPT, estimated: false };
    m.observeCost({ ...cost, usage, costMicros: 1234, savedMicros: 0, cacheHit: false });
    m.observeCost({ ...cost, usage, costMicros: 0, savedMicros: 1000, cacheHit: true });
    m.observeCost({
      ...cost,
      model: 'claude',
      deployment: CLAUDE,
      usage,
      costMicros: null,
      savedMicros: 0,
      cacheHit: false,
    });
    m.observeCost({
      ...cost,
      usage: { prompt_tokens: 5 },
      costMicros: 66,
      savedMicros: 0,
      cacheHit: false,
      estimated: true,
    });
    // 4. Two streams open, one closes (twice: the second close is ignored).
    const close = m.streamOpened();
    m.streamOpened();
    close();
    close();

    const { families, samples } = await scrape(m);
    assert.deepEqual([...families.entries()].sort(), [
      ['tollgate_cache_hit_ratio', 'gauge'],
      ['tollgate_cache_saved_usd_total', 'counter'],
      ['tollgate_cost_usd_total', 'counter'],
      ['tollgate_event_loop_lag_seconds', 'gauge'],
      ['tollgate_fallbacks_total', 'counter'],
      ['tollgate_limit_rejections_total', 'counter'],
      ['tollgate_price_unknown_total', 'counter'],
      ['tollgate_request_duration_seconds', 'histogram'],
      ['tollgate_request_errors_total', 'counter'],
      ['tollgate_requests_total', 'counter'],
      ['tollgate_retries_total', 'counter'],
      ['tollgate_spend_increments_dropped_total', 'counter'],
      ['tollgate_spend_increments_pending', 'gauge'],
      ['tollgate_streams_in_flight', 'gauge'],
      ['tollgate_time_to_first_token_seconds', 'histogram'],
      ['tollgate_tokens_total', 'counter'],
      ['tollgate_upstream_errors_total', 'counter'],
      ['tollgate_usage_estimated_total', 'counter'],
    ]);

    const req = { team: 'alpha', model: 'gpt-4o', endpoint: 'chat', status: '200' };
    assert.equal(valueOf(samples, 'tollgate_requests_total', { ...req, cache: 'miss' }), 2);
    assert.equal(valueOf(samples, 'tollgate_requests_total', { ...req, cache: 'hit' }), 1);
    const beta = { team: 'beta', model: 'claude', endpoint: 'chat', cache: 'none' };
    assert.equal(valueOf(samples, 'tollgate_requests_total', { ...beta, status: '502' }), 1);
    assert.equal(valueOf(samples, 'tollgate_requests_total', { ...beta, status: '429' }), 1);
    assert.equal(samples.filter((s) => s.name === 'tollgate_requests_total').length, 4);
    const betaErr = { team: 'beta', model: 'claude' };
    assert.equal(
      valueOf(samples, 'tollgate_request_errors_total', { ...betaErr, code: 'upstream_unavailable' }),
      1,
    );
    assert.equal(
      valueOf(samples, 'tollgate_request_errors_total', { ...betaErr, code: 'rate_limit_exceeded' }),
      1,
    );

    // Beta made no cache lookups, so it has no ratio rather than a 0/0.
    assert.equal(valueOf(samples, 'tollgate_cache_hit_ratio', { team: 'alpha' }), 1 / 3);
    assert.equal(valueOf(samples, 'tollgate_cache_hit_ratio', { team: 'beta' }), undefined);

    const lat = { endpoint: 'chat', model: 'gpt-4o', stream: 'false', cache_hit: 'false' };
    assert.equal(valueOf(samples, 'tollgate_request_duration_seconds_count', lat), 1);
    assert.equal(valueOf(samples, 'tollgate_request_duration_seconds_sum', lat), 1.2);
    assert.equal(valueOf(samples, 'tollgate_request_duration_seconds_bucket', { ...lat, le: '1' }), 0);
    assert.equal(valueOf(samples, 'tollgate_request_duration_seconds_bucket', { ...lat, le: '2.5' }), 1);
    assert.equal(valueOf(samples, 'tollgate_request_duration_seconds_bucket', { ...lat, le: '600' }), 1);
    const streamed = { ...lat, stream: 'true' };
    assert.equal(valueOf(samples, 'tollgate_request_duration_seconds_count', streamed), 1);
    assert.equal(
      valueOf(samples, 'tollgate_request_duration_seconds_count', { ...streamed, cache_hit: 'true' }),
      1,
    );
    const ttft = { model: 'gpt-4o', cache_hit: 'false' };
    assert.equal(valueOf(samples, 'tollgate_time_to_first_token_seconds_count', ttft), 1);
    assert.equal(valueOf(samples, 'tollgate_time_to_first_token_seconds_bucket', { ...ttft, le: '0.5' }), 0);
    assert.equal(valueOf(samples, 'tollgate_time_to_first_token_seconds_bucket', { ...ttft, le: '0.75' }), 1);
    assert.equal(
      valueOf(samples, 'tollgate_time_to_first_token_seconds_bucket', {
        ...ttft,
        le: '0.05',
        cache_hit: 'true',
      }),
      1,
    );

    // The hit adds no tokens; the unknown-price claude request does (it did go upstream).
    const tok = { team: 'alpha', model: 'gpt-4o' };
    assert.equal(valueOf(samples, 'tollgate_tokens_total', { ...tok, type: 'prompt' }), 105);
    assert.equal(valueOf(samples, 'tollgate_tokens_total', { ...tok, type: 'completion' }), 50);
    assert.equal(valueOf(samples, 'tollgate_tokens_total', { ...tok, type: 'cached' }), 20);
    assert.equal(valueOf(samples, 'tollgate_tokens_total', { ...tok, type: 'reasoning' }), 10);
    assert.equal(
      valueOf(samples, 'tollgate_tokens_total', { team: 'alpha', model: 'claude', type: 'prompt' }),
      100,
    );
    // 1234 + 0 + 66 µ$, divided once: exactly 0.0013.
    assert.equal(valueOf(samples, 'tollgate_cost_usd_total', tok), 0.0013);
    assert.equal(valueOf(samples, 'tollgate_cost_usd_total', { team: 'alpha', model: 'claude' }), undefined);
    assert.equal(valueOf(samples, 'tollgate_cache_saved_usd_total', tok), 0.001);
    assert.equal(valueOf(samples, 'tollgate_price_unknown_total', { deployment: CLAUDE.id }), 1);
    assert.equal(valueOf(samples, 'tollgate_usage_estimated_total', tok), 1);

    assert.equal(
      valueOf(samples, 'tollgate_upstream_errors_total', {
        deployment: CLAUDE.id,
        code: 'upstream_server_error',
      }),
      2,
    );
    assert.equal(valueOf(samples, 'tollgate_retries_total', { deployment: CLAUDE.id }), 1);
    assert.equal(valueOf(samples, 'tollgate_fallbacks_total', { from: CLAUDE.id, to: GPT.id }), 1);
    assert.equal(valueOf(samples, 'tollgate_limit_rejections_total', { team: 'beta', kind: 'tokens' }), 1);
    assert.equal(valueOf(samples, 'tollgate_streams_in_flight'), 1);
    assert.equal(valueOf(samples, 'tollgate_spend_increments_pending'), 3);
    assert.equal(valueOf(samples, 'tollgate_spend_increments_dropped_total'), 7);
    m.stop();
  });

  it('adds no key_id label unless keyLabels is on', async () => {
    const cost = {
      team: 'alpha',
      keyId: 'k1',
      model: 'gpt-4o',
      deployment: GPT,
      usage: { prompt_tokens: 10, completion_tokens: 2 },
      costMicros: 10,
      savedMicros: 0,
      estimated: false,
      cacheHit: false,
    };
    const off = metrics();
    off.observeRequest(request({ keyId: 'k1' }));
    off.observeCost(cost);
    const offText = (await off.render()).body;
    assert.doesNotMatch(offText, /key_id/);
    assert.doesNotMatch(offText, /k1/);

    const on = metrics({ keyLabels: true });
    on.observeRequest(request({ keyId: 'k1' }));
    on.observeCost(cost);
    const { samples } = await scrape(on);
    const base = { team: 'alpha', model: 'gpt-4o', key_id: 'k1' };
    assert.equal(
      valueOf(samples, 'tollgate_requests_total', {
        ...base,
        endpoint: 'chat',
        status: '200',
        cache: 'none',
      }),
      1,
    );
    assert.equal(valueOf(samples, 'tollgate_tokens_total', { ...base, type: 'prompt' }), 10);
    assert.equal(valueOf(samples, 'tollgate_cost_usd_total', base), 0.00001);
    // Histograms never carry the key: they cost a series per bucket.
    assert.ok(
      samples.filter((s) => s.name.startsWith('tollgate_request_duration')).every((s) => !s.labels.key_id),
    );
    off.stop();
    on.stop();
  });

  it('reports model names past the cap as "other", while models known from config keep their own', async () => {
    const m = metrics({ maxLabelValues: 2, known: { models: ['gpt-4o'] } });
    for (const model of ['x-1', 'x-2', 'x-3', 'x-4', 'gpt-4o', 'x-1', 'y'.repeat(200)]) {
      m.observeRequest(request({ model }));
    }
    m.observeRequest(request({ model: undefined, team: '', status: 401, errorCode: 'invalid_api_key' }));
    const { samples } = await scrape(m);
    const counts = new Map(
      samples.filter((s) => s.name === 'tollgate_requests_total').map((s) => [s.labels.model, s.value]),
    );
    assert.deepEqual(Object.fromEntries(counts), { 'x-1': 2, 'x-2': 1, other: 3, 'gpt-4o': 1, none: 1 });
    assert.equal(
      valueOf(samples, 'tollgate_request_errors_total', {
        team: 'none',
        model: 'none',
        code: 'invalid_api_key',
      }),
      1,
    );
    m.stop();
  });

  it('never throws on usage a bad upstream reported', async () => {
    const m = metrics();
    m.observeCost({
      team: 'alpha',
      keyId: 'k1',
      model: 'gpt-4o',
      deployment: GPT,
      usage: { prompt_tokens: -3, completion_tokens: Number.NaN, prompt_tokens_details: null },
      costMicros: null,
      savedMicros: 0,
      estimated: false,
      cacheHit: false,
    });
    m.observeRequest(request({ latencyMs: Number.NaN, ttftMs: -1 }));
    const { samples } = await scrape(m);
    assert.equal(samples.filter((s) => s.name === 'tollgate_tokens_total').length, 0);
    assert.equal(valueOf(samples, 'tollgate_price_unknown_total', { deployment: GPT.id }), 1);
    m.stop();
  });

  it('measures event-loop lag without the monitor resolution', async () => {
    const m = metrics();
    await new Promise((resolve) => setTimeout(resolve, 60));
    const until = performance.now() + 120;
    while (performance.now() < until);
    await new Promise((resolve) => setTimeout(resolve, 60));
    const { samples } = await scrape(m);
    const max = valueOf(samples, 'tollgate_event_loop_lag_seconds', { quantile: '1' });
    const p50 = valueOf(samples, 'tollgate_event_loop_lag_seconds', { quantile: '0.5' });
    assert.ok(max !== undefined && max >= 0.08 && max < 1, `max lag ${max}`);
    assert.ok(p50 !== undefined && p50 < max, `p50 lag ${p50}`);
    m.stop();
  });

  it('aggregates two registries as a cluster primary would', async () => {
    const a = metrics();
    const b = metrics();
    a.observeRequest(request({}));
    b.observeRequest(request({}));
    b.observeRequest(request({}));
    a.streamOpened();
    b.streamOpened();
    const merged = AggregatorRegistry.aggregate([
      await a.registry.getMetricsAsJSON(),
      await b.registry.getMetricsAsJSON(),
    ]);
    const { samples } = parse(await merged.metrics());
    const req = { team: 'alpha', model: 'gpt-4o', endpoint: 'chat', status: '200', cache: 'none' };
    assert.equal(valueOf(samples, 'tollgate_requests_total', req), 3);
    assert.equal(valueOf(samples, 'tollgate_streams_in_flight'), 2);
    a.stop();
    b.stop();
  });

  it('reads admission ahead counts at each scrape, summed across workers', async () => {
    const a = metrics();
    const b = metrics();
    const counts = { made: 3, used: 2, expired: 1, declined: 0 };
    a.watchAdmissionsAhead(() => counts);
    b.watchAdmissionsAhead(() => ({ made: 1, used: 1, expired: 0, declined: 4 }));
    counts.used = 5; // the value at the scrape, not at registration
    const merged = AggregatorRegistry.aggregate([
      await a.registry.getMetricsAsJSON(),
      await b.registry.getMetricsAsJSON(),
    ]);
    const { samples } = parse(await merged.metrics());
    assert.equal(valueOf(samples, 'tollgate_admissions_ahead_total', { outcome: 'made' }), 4);
    assert.equal(valueOf(samples, 'tollgate_admissions_ahead_total', { outcome: 'used' }), 6);
    assert.equal(valueOf(samples, 'tollgate_admissions_ahead_total', { outcome: 'declined' }), 4);
    a.stop();
    b.stop();
  });

  it('includes the process metrics once asked, under their standard names', async () => {
    const a = metrics({ processMetrics: true });
    const b = metrics({ processMetrics: true });
    for (const m of [a, b]) {
      const { families } = await scrape(m);
      assert.equal(families.get('process_cpu_seconds_total'), 'counter');
      assert.equal(families.get('nodejs_eventloop_lag_p99_seconds'), 'gauge');
      assert.equal(families.get('nodejs_gc_duration_seconds'), 'histogram');
    }
    a.stop();
    b.stop();
  });

  it('leaves no timer or handle behind after stop()', async () => {
    // Immediates run once and go (prom-client's lag gauge schedules one per scrape); anything
    // else still here would be a timer or handle that could keep the process alive.
    const lasting = () =>
      process
        .getActiveResourcesInfo()
        .filter((r) => r !== 'Immediate')
        .sort();
    const before = lasting();
    const m = new Metrics({ keyLabels: true, processMetrics: true });
    m.observeRequest(request({}));
    await m.render();
    m.stop();
    m.stop();
    assert.deepEqual(lasting(), before);
    // The lag monitor is off: a blocked loop after stop() changes nothing. Rendering still works,
    // and this test file exiting is the rest of the proof.
    const lag = async () =>
      valueOf((await scrape(m)).samples, 'tollgate_event_loop_lag_seconds', { quantile: '1' });
    const stopped = await lag();
    const until = performance.now() + 120;
    while (performance.now() < until);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(await lag(), stopped);
  });
});

describe('GET /metrics', () => {
  it('answers with the Prometheus text content type', async () => {
    const m = metrics();
    m.observeRequest(request({}));
    const app = Fastify();
    registerMetricsRoute(app, m);
    const res = await app.inject({ url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.match(res.body, /^tollgate_requests_total\{.*\} 1$/m);
    await app.close();
    m.stop();
  });

  it('asks for the bearer token when one is configured', async () => {
    const m = metrics();
    const app = Fastify();
    registerMetricsRoute(app, m, { token: 's3cret' });
    const none = await app.inject({ url: '/metrics' });
    assert.equal(none.statusCode, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="metrics"');
    const wrong = await app.inject({ url: '/metrics', headers: { authorization: 'Bearer s3cre' } });
    assert.equal(wrong.statusCode, 401);
    const basic = await app.inject({ url: '/metrics', headers: { authorization: 'Basic s3cret' } });
    assert.equal(basic.statusCode, 401);
    const right = await app.inject({ url: '/metrics', headers: { authorization: 'bearer s3cret' } });
    assert.equal(right.statusCode, 200);
    assert.match(right.body, /# TYPE tollgate_requests_total counter/);
    await app.close();
    m.stop();
  });

  it('refuses an empty token instead of opening the endpoint', () => {
    const m = metrics();
    assert.throws(() => registerMetricsRoute(Fastify(), m, { token: '' }), /empty/);
    m.stop();
  });
});
