// Runtime metrics: tollgate's own event-loop lag gauge (stoppable, one monitor per Metrics) and
// prom-client's process defaults (CPU, memory, GC, handles), which measure the process and so
// are created once per process and shared by every registry that asks for them.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collectDefaultMetrics, Gauge, Registry, type Aggregator } from 'prom-client';

/** How often the lag monitor's timer fires; lag is measured in ns whatever this is. */
const RESOLUTION_MS = 20;
const QUANTILES = ['0.5', '0.9', '0.99', '1'] as const;

/**
 * Registers `tollgate_event_loop_lag_seconds{quantile}` (quantile "1" is the maximum) over the
 * window since the previous scrape, and returns the function that stops its monitor.
 *
 * Why not only prom-client's nodejs_eventloop_lag_p99_seconds: Node's monitor records the
 * interval between its timer's ticks, so an idle loop reads as the resolution (about 10 ms),
 * not 0; here the resolution is subtracted. Its cluster aggregator is `max` (the worst worker is
 * what an alert wants), where prom-client's averages. And prom-client offers no way to stop
 * its monitor, while stop() here does.
 */
export function registerEventLoopLag(registry: Registry): () => void {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  const lagSeconds = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS) / 1000;
  new Gauge({
    name: 'tollgate_event_loop_lag_seconds',
    help: 'Event-loop lag since the previous scrape, by quantile ("1" is the maximum).',
    labelNames: ['quantile'],
    registers: [registry],
    aggregator: 'max',
    collect() {
      // No tick since the last reset (scrapes closer than the resolution): keep the last values.
      if (histogram.count === 0) return;
      for (const q of QUANTILES) {
        const ns = q === '1' ? histogram.max : histogram.percentile(Number(q) * 100);
        this.set({ quantile: q }, lagSeconds(ns));
      }
      histogram.reset();
    },
  });
  return () => histogram.disable();
}

let processRegistry: Registry | undefined;

/**
 * Adds prom-client's default metrics under their standard names (process_cpu_seconds_total,
 * nodejs_heap_size_used_bytes, nodejs_gc_duration_seconds, nodejs_eventloop_lag_p99_seconds…),
 * which stock Node dashboards and AggregatorRegistry expect; Prometheus's job label says which
 * service they belong to, so no prefix. Their collectors (a GC observer, an event-loop monitor,
 * both unref'd) live as long as the process: prom-client cannot stop them, so they are made
 * once and the same metric objects are registered in each registry.
 */
export function registerProcessMetrics(registry: Registry): void {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  for (const { name } of processRegistry.getMetricsAsArray()) {
    const metric = processRegistry.getSingleMetric(name);
    if (!metric) continue;
    const aggregator = PROCESS_AGGREGATORS[name];
    if (aggregator) Object.assign(metric, { aggregator });
    registry.registerMetric(metric);
  }
}

/**
 * prom-client's own aggregators for its defaults are kept where they fit a cluster: memory, CPU,
 * heap, handles and open fds sum (the gateway's total use: process_resident_memory_bytes is
 * every worker's RSS together, the primary's excepted); its event-loop lag gauges average (min
 * and max take the min and max); the start time is omitted and the version is the first
 * worker's. Overridden here: a limit that every worker has alike is not a sum.
 */
const PROCESS_AGGREGATORS: Record<string, Aggregator> = {
  process_max_fds: 'max',
};
