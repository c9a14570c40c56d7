// The gateway's Prometheus metrics. Each Metrics object owns its Registry (never prom-client's
// global one), so tests can build several and the cluster primary can aggregate the workers'
// registries with AggregatorRegistry (cluster/metrics-ipc.ts): every metric here says how it
// aggregates. Counters and histograms sum (prom-client's default; ours are cumulative per
// worker, so the sum is the gateway's total). Gauges say so explicitly, each with its reason. The
// request path calls the observe methods; callback-backed values are read at scrape time. Label
// values are bounded by LabelCap, and key ids are labels only when config asks for them.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LabelCap } from './label-cap.js';
import type { CostObservation, LimitKind, MetricsOptions, RequestObservation } from './types.js';
import { registerEventLoopLag, registerProcessMetrics } from './runtime.js';

export type {
  CacheStatus,
  CostObservation,
  KnownLabelValues,
  LimitKind,
  MetricsOptions,
  RequestObservation,
  UsageCounts,
} from './types.js';

/** Whole requests, up to ten minutes for a long generation. */
export const LATENCY_BUCKETS_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];
export const TTFT_BUCKETS_SECONDS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60];

type Labels = Record<string, string>;

/**
 * A counter summed in a Map of our own and handed to prom-client only at scrape time. prom-client
 * hashes the label object (sorting its names) on every inc, and the request path adds to these
 * several times per request; here an add is one string key and a Map lookup. `divisor` turns
 * the integer sum into the exposed unit once per scrape (USD from micro-dollars: the exposed
 * total is the double nearest the exact sum, not an accumulation of float increments).
 */
function summedCounter(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  divisor = 1,
): (labels: Labels, n: number) => void {
  const totals = new Map<string, { labels: Labels; sum: number }>();
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels, sum } of totals.values()) this.inc(labels, sum / divisor);
    },
  });
  return (labels, n) => {
    let key = '';
    for (const l of labelNames) key += `${labels[l]}\u0000`;
    const entry = totals.get(key);
    if (entry) entry.sum += n;
    else totals.set(key, { labels, sum: n });
  };
}

/** A count the metrics may add: finite and not negative (bad usage must not throw here). */
function countable(n: number | null | undefined): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly keyLabels: boolean;
  private readonly teams: LabelCap;
  private readonly models: LabelCap;
  private readonly deployments: LabelCap;
  private readonly keyIds: LabelCap;
  private readonly codes: LabelCap;
  private readonly endpoints: LabelCap;
  private readonly cacheLookups = new Map<string, { hits: number; misses: number }>();
  private stopLag: (() => void) | undefined;

  private readonly addRequest: (labels: Labels, n: number) => void;
  private readonly requestErrors: Counter;
  private readonly latency: Histogram;
  private readonly ttft: Histogram;
  private readonly addTokens: (labels: Labels, n: number) => void;
  private readonly addCost: (labels: Labels, micros: number) => void;
  private readonly addSaved: (labels: Labels, micros: number) => void;
  private readonly priceUnknown: Counter;
  private readonly estimated: Counter;
  private readonly upstreamErrors: Counter;
  private readonly retries: Counter;
  private readonly fallbacks: Counter;
  private readonly limitRejections: Counter;
  private readonly streams: Gauge;

  constructor(options: MetricsOptions) {
    const r = this.registry;
    const max = options.maxLabelValues ?? 200;
    const known = options.known ?? {};
    this.keyLabels = options.keyLabels;
    this.teams = new LabelCap(max, known.teams);
    this.models = new LabelCap(max, known.models);
    this.deployments = new LabelCap(max, known.deployments);
    this.keyIds = new LabelCap(max, known.keyIds);
    this.codes = new LabelCap(max);
    this.endpoints = new LabelCap(max);
    const key = options.keyLabels ? ['key_id'] : [];
    const registers = [r];

    this.addRequest = summedCounter(
      r,
      'tollgate_requests_total',
      'Requests answered, by team, requested model, endpoint, HTTP status and cache status.',
      ['team', 'model', 'endpoint', 'status', 'cache', ...key],
    );
    this.requestErrors = new Counter({
      name: 'tollgate_request_errors_total',
      help: 'Requests answered with an error, by error code.',
      labelNames: ['team', 'model', 'code'],
      registers,
    });
    const lookups = this.cacheLookups;
    new Gauge({
      name: 'tollgate_cache_hit_ratio',
      help: 'Cache hits / (hits + misses) since start, by team. Across processes, compute it from tollgate_requests_total.',
      labelNames: ['team'],
      registers,
      // The mean of the workers' ratios, each weighted alike (not by lookups): a rough figure, as
      // the help says; the exact ratio comes from tollgate_requests_total, which sums.
      aggregator: 'average',
      collect() {
        this.reset();
        for (const [team, { hits, misses }] of lookups) this.set({ team }, hits / (hits + misses));
      },
    });
    this.latency = new Histogram({
      name: 'tollgate_request_duration_seconds',
      help: 'Time from request to the end of the response (the last chunk for a stream).',
      labelNames: ['endpoint', 'model', 'stream', 'cache_hit'],
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.ttft = new Histogram({
      name: 'tollgate_time_to_first_token_seconds',
      help: 'Time from request to the first chunk written to the client, streams only.',
      labelNames: ['model', 'cache_hit'],
      buckets: TTFT_BUCKETS_SECONDS,
      registers,
    });
    this.addTokens = summedCounter(
      r,
      'tollgate_tokens_total',
      'Tokens billed upstream, by type: cached is part of prompt, reasoning part of completion. Cache hits add none.',
      ['team', 'model', 'type', ...key],
    );
    const MICROS = 1_000_000;
    this.addCost = summedCounter(
      r,
      'tollgate_cost_usd_total',
      'Upstream cost in USD.',
      ['team', 'model', ...key],
      MICROS,
    );
    this.addSaved = summedCounter(
      r,
      'tollgate_cache_saved_usd_total',
      'What cache hits would have cost, in USD.',
      ['team', 'model', ...key],
      MICROS,
    );
    this.priceUnknown = new Counter({
      name: 'tollgate_price_unknown_total',
      help: 'Requests whose cost is unknown (no price for the deployment, or usage it cannot price).',
      labelNames: ['deployment'],
      registers,
    });
    this.estimated = new Counter({
      name: 'tollgate_usage_estimated_total',
      help: 'Requests billed from estimated usage (a stream that ended without a usage chunk).',
      labelNames: ['team', 'model'],
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'tollgate_upstream_errors_total',
      help: 'Failed upstream attempts, by deployment and error code.',
      labelNames: ['deployment', 'code'],
      registers,
    });
    this.retries = new Counter({
      name: 'tollgate_retries_total',
      help: 'Attempts repeated on the same deployment.',
      labelNames: ['deployment'],
      registers,
    });
    this.fallbacks = new Counter({
      name: 'tollgate_fallbacks_total',
      help: 'Moves to the next candidate deployment after a failure.',
      labelNames: ['from', 'to'],
      registers,
    });
    this.limitRejections = new Counter({
      name: 'tollgate_limit_rejections_total',
      help: 'Requests rejected by a team limit, by kind.',
      labelNames: ['team', 'kind'],
      registers,
    });
    this.streams = new Gauge({
      name: 'tollgate_streams_in_flight',
      help: 'Streaming responses currently open.',
      registers,
      // Each worker counts its own open streams: the gateway has their sum open.
      aggregator: 'sum',
    });
    const { pendingSpend, droppedSpend } = options;
    new Gauge({
      name: 'tollgate_spend_increments_pending',
      help: 'Spend increments waiting for Redis to come back.',
      registers,
      // Each worker buffers its own: the sum is what the gateway would lose if all stopped now.
      aggregator: 'sum',
      collect() {
        const n = pendingSpend?.() ?? 0;
        this.set(countable(n) ? n : 0);
      },
    });
    new Counter({
      name: 'tollgate_spend_increments_dropped_total',
      help: 'Spend increments dropped while Redis was away because the pending buffer was full.',
      registers,
      collect() {
        const n = droppedSpend?.() ?? 0;
        this.reset();
        this.inc(countable(n) ? n : 0);
      },
    });

    this.stopLag = registerEventLoopLag(r);
    if (options.processMetrics ?? true) registerProcessMetrics(r);
  }

  /** Once per request, when its log line is written. */
  observeRequest(o: RequestObservation): void {
    const team = this.teams.value(o.team);
    const model = this.models.value(o.model);
    const endpoint = this.endpoints.value(o.endpoint);
    const status =
      Number.isInteger(o.status) && o.status >= 100 && o.status <= 599 ? String(o.status) : 'other';
    const cache = o.cache?.toLowerCase() ?? 'none';
    this.addRequest({ team, model, endpoint, status, cache, ...this.keyLabel(o.keyId) }, 1);
    if (o.errorCode) this.requestErrors.inc({ team, model, code: this.codes.value(o.errorCode) });
    if (o.cache === 'HIT' || o.cache === 'MISS') {
      const counts = this.cacheLookups.get(team) ?? { hits: 0, misses: 0 };
      if (o.cache === 'HIT') counts.hits += 1;
      else counts.misses += 1;
      this.cacheLookups.set(team, counts);
    }
    const cacheHit = String(o.cache === 'HIT');
    if (countable(o.latencyMs)) {
      this.latency.observe(
        { endpoint, model, stream: String(o.stream), cache_hit: cacheHit },
        o.latencyMs / 1000,
      );
    }
    if (countable(o.ttftMs)) this.ttft.observe({ model, cache_hit: cacheHit }, o.ttftMs / 1000);
  }

  /** Once per request with its usage and cost (the accounting stage's onCost). */
  observeCost(c: CostObservation): void {
    const labels = { team: this.teams.value(c.team), model: this.models.value(c.model) };
    const withKey = { ...labels, ...this.keyLabel(c.keyId) };
    const u = c.usage;
    if (u && !c.cacheHit) {
      const byType: [string, number | undefined][] = [
        ['prompt', u.prompt_tokens],
        ['completion', u.completion_tokens],
        ['cached', u.prompt_tokens_details?.cached_tokens],
        ['reasoning', u.completion_tokens_details?.reasoning_tokens],
      ];
      for (const [type, n] of byType) if (countable(n) && n > 0) this.addTokens({ ...withKey, type }, n);
    }
    if (c.costMicros === null)
      this.priceUnknown.inc({ deployment: this.deployments.value(c.deployment?.id) });
    else if (countable(c.costMicros)) this.addCost(withKey, c.costMicros);
    if (c.cacheHit && countable(c.savedMicros)) this.addSaved(withKey, c.savedMicros);
    if (c.estimated) this.estimated.inc(labels);
  }

  /** A failed upstream attempt (`code`: the GatewayError code, e.g. upstream_timeout). */
  upstreamError(deploymentId: string, code: string): void {
    this.upstreamErrors.inc({
      deployment: this.deployments.value(deploymentId),
      code: this.codes.value(code),
    });
  }

  /** Before each repeated attempt on the same deployment. */
  retry(deploymentId: string): void {
    this.retries.inc({ deployment: this.deployments.value(deploymentId) });
  }

  /** When a failure moves the request from one candidate deployment to the next. */
  fallback(fromDeploymentId: string, toDeploymentId: string): void {
    this.fallbacks.inc({
      from: this.deployments.value(fromDeploymentId),
      to: this.deployments.value(toDeploymentId),
    });
  }

  limitRejected(team: string, kind: LimitKind): void {
    this.limitRejections.inc({ team: this.teams.value(team), kind });
  }

  /** When a stream's headers go out; call the returned function when it ends (only the first call counts). */
  streamOpened(): () => void {
    this.streams.inc();
    let open = true;
    return () => {
      if (open) this.streams.dec();
      open = false;
    };
  }

  /**
   * Admission ahead's counts since start (pipeline/limits/ahead.ts), read at each scrape: tickets
   * made, used by a request, given back unused (expired), declined (a limit was near).
   */
  watchAdmissionsAhead(read: () => Readonly<Record<string, number>>): void {
    new Counter({
      name: 'tollgate_admissions_ahead_total',
      help: 'Admissions made ahead of their requests (tickets), by outcome: made, used, expired (given back unused), declined (a limit was near).',
      labelNames: ['outcome'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [outcome, n] of Object.entries(read())) this.inc({ outcome }, n);
      },
    });
  }

  /** The text exposition for a scrape. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Stops the event-loop monitor; the metrics still render, lag keeps its last values. */
  stop(): void {
    this.stopLag?.();
    this.stopLag = undefined;
  }

  private keyLabel(keyId: string | undefined): Labels {
    return this.keyLabels ? { key_id: this.keyIds.value(keyId) } : {};
  }
}
