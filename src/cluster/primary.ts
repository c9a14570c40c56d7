// The node:cluster primary of `tollgate serve --workers N`. It serves no requests itself: it forks
// N workers that share the port (on Linux node:cluster accepts in the primary and hands the
// connections out round-robin), restarts a worker that dies unexpectedly (with a backoff, so a
// crash loop does not spin), relays the workers' log lines (log-relay.ts), answers their requests
// for the aggregated metrics (metrics-ipc.ts), and on SIGTERM or SIGINT forwards SIGTERM to every
// worker, each of which then drains exactly as a single process does (main.ts). It exits 0 when
// every worker exited 0 within the deadline, 1 otherwise.
//
// Limits, budgets, the cache and cooldowns hold across workers because they live in Redis, as
// they do across replicas; main.ts refuses more than one worker with the memory store.
import cluster, { type Worker } from 'node:cluster';
import pino from 'pino';
import { createLogger } from '../log.js';
import { createLogRelay } from './log-relay.js';
import { answerMetricsRequests } from './metrics-ipc.js';

export interface PrimaryOptions {
  workers: number;
  logLevel: string;
  /** server.shutdownTimeoutMs: how long each worker lets in-flight requests finish. */
  shutdownTimeoutMs: number;
}

/** The first restart after a crash waits this long; each further crash in a row doubles it... */
export const RESTART_BASE_DELAY_MS = 500;
/** ...up to this. */
export const RESTART_MAX_DELAY_MS = 30_000;
/** A worker that lived this long was not crash-looping: its replacement starts the count again. */
export const STABLE_AFTER_MS = 30_000;
/**
 * Beyond shutdownTimeoutMs (when a worker closes the connections still open) the time a worker
 * gets to close its store, flush its logs and exit before the primary kills it.
 */
export const SHUTDOWN_GRACE_MS = 5_000;
/** How long the primary waits, once every worker has exited, for their last log lines. */
const LAST_LINES_WAIT_MS = 1_000;

/** The delay before restarting a worker that crashed `failures` times in a row (from 1). */
export function restartDelayMs(failures: number): number {
  return Math.min(RESTART_MAX_DELAY_MS, RESTART_BASE_DELAY_MS * 2 ** Math.max(0, failures - 1));
}

interface Slot {
  worker: Worker | undefined;
  startedAt: number;
  /** Whether the current worker has listened. */
  listening: boolean;
  /** Crashes in a row, each within STABLE_AFTER_MS of its start. */
  failures: number;
  restart: NodeJS.Timeout | undefined;
}

export function runPrimary(options: PrimaryOptions): void {
  // One writer to the real stdout: this process's own lines and the workers', whole lines only.
  const out = pino.destination({ dest: 1, sync: false });
  const log = createLogger(options.logLevel, out);
  const relay = createLogRelay(out);
  answerMetricsRequests();
  // stdin: workers read none. stderr: inherited, for what a dying worker prints (rare, unbatched).
  cluster.setupPrimary({ stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });

  const slots: Slot[] = Array.from({ length: options.workers }, () => ({
    worker: undefined,
    startedAt: 0,
    listening: false,
    failures: 0,
    restart: undefined,
  }));
  const listened = new Set<Slot>();
  let stopping = false;
  let failed = false;
  let finished = false;
  let deadline: NodeJS.Timeout | undefined;

  const finish = (): void => {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    const code = failed ? 1 : 0;
    const lastLines = new Promise((resolve) => setTimeout(resolve, LAST_LINES_WAIT_MS).unref());
    void Promise.race([relay.ended(), lastLines]).then(() => {
      log.info({ code }, 'cluster stopped');
      log.flush(() => process.exit(code));
    });
  };

  const live = (): Worker[] => slots.flatMap((s) => (s.worker ? [s.worker] : []));

  const stop = (): void => {
    stopping = true;
    for (const slot of slots) clearTimeout(slot.restart);
    for (const worker of live()) worker.process.kill('SIGTERM');
    if (live().length === 0) return finish();
    deadline = setTimeout(() => {
      failed = true;
      log.error(
        { workers: live().map((w) => w.id) },
        'workers still running past the shutdown deadline: killing them',
      );
      for (const worker of live()) worker.process.kill('SIGKILL');
    }, options.shutdownTimeoutMs + SHUTDOWN_GRACE_MS);
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    slot.worker = undefined;
    const exit = { worker: worker.id, workerPid: worker.process.pid, code, signal };
    if (stopping) {
      // A worker still starting when the signal came dies of it (its handler is not installed
      // yet): it had no requests to drain, so that is clean too.
      const clean = code === 0 || (signal === 'SIGTERM' && !slot.listening);
      if (!clean) failed = true;
      if (clean) log.info(exit, 'worker stopped');
      else log.warn(exit, 'worker stopped uncleanly');
      if (live().length === 0) finish();
      return;
    }
    if (listened.size === 0) {
      // No worker ever listened: a start-up error (the port taken, an unusable address) that every
      // replacement would repeat. Fail as a single process would, instead of restarting forever.
      failed = true;
      log.error(exit, 'a worker exited before any worker was listening: stopping');
      return stop();
    }
    const livedMs = Date.now() - slot.startedAt;
    slot.failures = livedMs >= STABLE_AFTER_MS ? 1 : slot.failures + 1;
    const restartInMs = restartDelayMs(slot.failures);
    log.error(
      { ...exit, livedMs, failures: slot.failures, restartInMs },
      'worker exited unexpectedly: starting a replacement',
    );
    slot.restart = setTimeout(() => {
      slot.restart = undefined;
      fork(slot);
    }, restartInMs);
  };

  const fork = (slot: Slot): void => {
    const worker = cluster.fork();
    slot.worker = worker;
    slot.startedAt = Date.now();
    slot.listening = false;
    if (worker.process.stdout) relay.add(worker.process.stdout);
    worker.on('listening', (address) => {
      slot.listening = true;
      if (listened.has(slot)) return;
      listened.add(slot);
      if (listened.size === slots.length)
        log.info({ workers: slots.length, port: address.port }, 'all workers listening');
    });
    worker.once('exit', (code: number | null, signal: string | null) => onExit(slot, worker, code, signal));
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (!stopping) {
      log.info(
        { signal, workers: live().length, deadlineMs: options.shutdownTimeoutMs },
        'shutting down: every worker drains its in-flight requests',
      );
      return stop();
    }
    // A second signal (Ctrl-C twice): stop now, as it would stop a single process.
    failed = true;
    log.warn({ signal }, 'second signal: killing the workers now');
    for (const worker of live()) worker.process.kill('SIGKILL');
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  log.info({ workers: slots.length }, 'cluster primary: starting workers');
  for (const slot of slots) fork(slot);
}
