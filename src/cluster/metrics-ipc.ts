// /metrics across a cluster: whichever worker a scrape reaches answers for the whole gateway.
// The worker asks the primary over the cluster's IPC channel; the primary calls prom-client's
// AggregatorRegistry.clusterMetrics(), which asks every worker for its registry as JSON (its own
// IPC messages, answered by the listener shareMetricsWithPrimary installs) and merges them by
// each metric's `aggregator` (metrics/metrics.ts says which and why); the primary sends the
// text back. Reading a registry as JSON runs its collect() callbacks, so the counters we sum in
// Maps of our own (metrics.ts, summedCounter) are handed to prom-client then, as for a scrape.
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Registry } from 'prom-client';
import type { RenderedMetrics } from '../http/routes/metrics.js';

const REQUEST = 'tollgate:cluster-metrics-request';
const RESPONSE = 'tollgate:cluster-metrics-response';

interface MetricsRequest {
  type: typeof REQUEST;
  id: number;
}

interface MetricsResponse {
  type: typeof RESPONSE;
  id: number;
  body?: string;
  error?: string;
}

/**
 * How long a worker waits for the primary's answer. prom-client's clusterMetrics() gives up on
 * workers that have not answered after 5 s (not configurable) and the primary then answers with
 * that error; this is a backstop for a primary that does not answer at all. Both stay under
 * Prometheus's default scrape_timeout (10 s).
 */
export const WORKER_WAIT_MS = 6_000;

function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

/** In the primary: answers the workers' requests for the aggregated metrics. */
export function answerMetricsRequests(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker: Worker, message: unknown) => {
    if (!isMessage<MetricsRequest>(message, REQUEST)) return;
    const reply = (answer: Omit<MetricsResponse, 'type' | 'id'>): void => {
      // The worker may have exited meanwhile; nobody is left to answer then.
      if (!worker.isConnected()) return;
      worker.send({ type: RESPONSE, id: message.id, ...answer } satisfies MetricsResponse, undefined, () => {
        // A send that failed because the worker went away: ignored for the same reason.
      });
    };
    aggregator.clusterMetrics().then(
      (body) => reply({ body }),
      (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) }),
    );
  });
}

/**
 * In a worker: lets the primary's AggregatorRegistry read `registries` (prom-client reads its
 * global registry unless told otherwise; ours is per Metrics object); call again to change them.
 * Constructing an AggregatorRegistry in a worker is what installs prom-client's answering listener
 * (once). A worker without it never answers, and holds up every scrape for 5 s.
 */
export function shareMetricsWithPrimary(registries: Registry[]): void {
  AggregatorRegistry.setRegistries(registries);
  new AggregatorRegistry();
}

const pending = new Map<
  number,
  { resolve: (body: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }
>();
let nextId = 1;
let listening = false;

/** In a worker: every worker's metrics, aggregated by the primary, as Prometheus text. */
export function requestClusterMetrics(waitMs = WORKER_WAIT_MS): Promise<RenderedMetrics> {
  const send = process.send?.bind(process);
  if (!send || !process.connected) {
    return Promise.reject(new Error('not connected to the cluster primary'));
  }
  if (!listening) {
    listening = true;
    process.on('message', (message: unknown) => {
      if (!isMessage<MetricsResponse>(message, RESPONSE)) return;
      const waiting = pending.get(message.id);
      if (!waiting) return;
      pending.delete(message.id);
      clearTimeout(waiting.timer);
      if (message.body !== undefined) waiting.resolve(message.body);
      else waiting.reject(new Error(`cluster aggregation failed: ${message.error ?? 'no answer'}`));
    });
  }
  const id = nextId++;
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`the cluster primary did not answer within ${waitMs} ms`));
    }, waitMs);
    pending.set(id, { resolve, reject, timer });
    send({ type: REQUEST, id } satisfies MetricsRequest, undefined, undefined, (err: Error | null) => {
      if (!err || !pending.delete(id)) return;
      clearTimeout(timer);
      reject(err);
    });
  }).then((body) => ({ contentType: Registry.PROMETHEUS_CONTENT_TYPE, body }));
}
