// TokenCounter: exact token counts where an estimate is not enough (the context-window guard near a
// window, aborted streams, upstreams that report no usage). Small inputs are counted inline; inputs
// of `workerThresholdChars` or more go to worker threads, so a huge prompt never stalls the event
// loop. create() loads the encodings (here and, unless lazyWorkers, in each worker) at start-up, not on a
// request.
import { Worker } from 'node:worker_threads';

import type { Logger } from 'pino';

import {
  countTexts,
  loadEncodings,
  modelTokenization,
  planChat,
  scaleCount,
  type ChatBody,
  type EncodingName,
  type Encoders,
  type ModelTokenization,
} from './token-count.js';
import type { TokenJob, TokenWorkerData, TokenWorkerMessage } from './token-worker.js';

export {
  CLAUDE_TOKEN_FACTOR,
  IMAGE_TOKENS_DEFAULT,
  IMAGE_TOKENS_LOW_DETAIL,
  REPLY_PRIMING_TOKENS,
  TOKENS_PER_MESSAGE,
  TOKENS_PER_NAME,
  TOKENS_PER_TOOL_CALL,
  loadEncodings,
  modelTokenization,
  type ChatBody,
  type EncodingName,
  type Encoders,
  type ModelTokenization,
} from './token-count.js';

/**
 * Inputs of this many UTF-16 code units (or chats whose texts add up to it) go to a worker. Handing
 * a text over costs the event loop 0.05-0.2 ms at any size; counting it inline costs about 0.3 ms
 * per KB on the (busy, 2-core) bench machine: 0.6 ms at 2 KB, 2.2 ms at 8 KB, 4.5 ms at 16 KB
 * (bench/tokens.mjs). 8 KB keeps an inline stall to about 2 ms; below it the worker's extra latency
 * (0.5-1 ms, more while it counts a huge prompt) is not worth it, and ordinary chats and
 * completions stay inline.
 */
export const DEFAULT_WORKER_THRESHOLD_CHARS = 8 * 1024;

/** A worker job running longer than this is abandoned: rejected, and its worker restarted. */
export const DEFAULT_JOB_TIMEOUT_MS = 30_000;
/** The workers' nice value (Linux): see TokenCounterOptions.workerNice. */
export const DEFAULT_WORKER_NICE = 5;

export interface TokenCounterOptions {
  /** Inputs at least this long (UTF-16 code units) are counted in a worker. */
  workerThresholdChars?: number;
  /** Worker threads (1 or 2 is plenty); 0 counts everything inline. Default 1. */
  workers?: number;
  /** See DEFAULT_JOB_TIMEOUT_MS. */
  jobTimeoutMs?: number;
  /**
   * Nice value of the worker threads on Linux (0-19; 0 leaves it alone). When the cores are busy,
   * a nicer worker yields to the event loop, which keeps serving requests; counting takes longer.
   */
  workerNice?: number;
  /** Told when a worker dies and is restarted. */
  log?: Pick<Logger, 'warn'>;
  /** Called with every worker started, restarts included (diagnostics, resource metrics, tests). */
  onWorker?: (worker: Worker) => void;
  /**
   * Start the workers on the first count that needs one instead of in create(). Each worker holds
   * its own copy of the encodings: about 85 MB of RSS, a third of a gateway process, paid again
   * by every process of a cluster (--workers), most of which may never count anything large. The
   * price: the first such count waits for its worker to load the encodings (about a second, on
   * the worker's thread; the event loop goes on). Default false.
   */
  lazyWorkers?: boolean;
}

/** A count that could not be made: a worker crashed or timed out, or the counter is closed. */
export class TokenCountError extends Error {
  override readonly name = 'TokenCountError';
}

interface QueuedJob {
  id: number;
  encoding: EncodingName;
  texts: string[];
  resolve: (tokens: number) => void;
  reject: (err: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  ready: boolean;
  job: QueuedJob | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Why the worker is being terminated, when we terminate it (timeout, close). */
  stopReason: Error | undefined;
  /** The uncaught error that killed the worker, if one did. */
  crash: Error | undefined;
}

/**
 * Starts a worker on the module next to this one, with this module's extension: `.js` in dist, run
 * as is; `.ts` under tsx (tests, dev). A worker does not inherit tsx's loader, and on Node 20
 * `execArgv: ['--import', 'tsx']` does not reach a worker's entry module ("Unknown file extension
 * .ts"), so a `.ts` worker is a small eval script that loads the module through tsx's tsImport.
 */
function spawnWorker(workerData: TokenWorkerData): Worker {
  const ts = import.meta.url.endsWith('.ts');
  const url = new URL(`./token-worker.${ts ? 'ts' : 'js'}`, import.meta.url);
  if (!ts) return new Worker(url, { execArgv: [], workerData });
  const api = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const source = `import(${api}).then((tsx) => tsx.tsImport(${JSON.stringify(url.href)}, ${JSON.stringify(import.meta.url)}));`;
  return new Worker(source, { eval: true, execArgv: [], workerData });
}

export class TokenCounter {
  readonly workerThresholdChars: number;
  readonly workers: number;
  readonly jobTimeoutMs: number;
  readonly workerNice: number;

  private encoders!: Encoders;
  private readonly log: Pick<Logger, 'warn'> | undefined;
  private readonly onWorker: ((worker: Worker) => void) | undefined;
  private readonly slots: (Slot | undefined)[];
  private readonly queue: QueuedJob[] = [];
  private nextId = 1;
  private restarts = 0;
  private closed = false;

  private constructor(opts: TokenCounterOptions) {
    this.workerThresholdChars = opts.workerThresholdChars ?? DEFAULT_WORKER_THRESHOLD_CHARS;
    this.workers = opts.workers ?? 1;
    this.jobTimeoutMs = opts.jobTimeoutMs ?? DEFAULT_JOB_TIMEOUT_MS;
    this.workerNice = opts.workerNice ?? DEFAULT_WORKER_NICE;
    this.log = opts.log;
    this.onWorker = opts.onWorker;
    if (!Number.isInteger(this.workers) || this.workers < 0) throw new RangeError('workers must be >= 0');
    if (!(this.workerThresholdChars >= 0)) throw new RangeError('workerThresholdChars must be >= 0');
    if (!Number.isInteger(this.workerNice) || this.workerNice < 0 || this.workerNice > 19) {
      throw new RangeError('workerNice must be an integer from 0 to 19');
    }
    this.slots = Array.from({ length: this.workers }, () => undefined);
  }

  /**
   * Loads the encodings and starts the worker(s), which load theirs meanwhile; resolves once every
   * worker is ready. With lazyWorkers, only loads the encodings: pump() starts a missing worker
   * when a job waits, as it restarts one that died.
   */
  static async create(opts: TokenCounterOptions = {}): Promise<TokenCounter> {
    const counter = new TokenCounter(opts);
    const started = opts.lazyWorkers
      ? Promise.resolve([])
      : Promise.all(counter.slots.map((_, index) => counter.start(index)));
    started.catch(() => undefined); // awaited below; this only covers loadEncodings() failing first
    try {
      counter.encoders = await loadEncodings();
      await started;
    } catch (err) {
      await counter.close();
      throw err;
    }
    return counter;
  }

  /** How a model's tokens are counted: its encoding, and whether the count is exact. */
  tokenization(model: string): ModelTokenization {
    return modelTokenization(model);
  }

  encodingFor(model: string): EncodingName {
    return modelTokenization(model).encoding;
  }

  /** Tokens in a plain text (no chat overhead), always counted inline: for small texts. */
  countTextSync(model: string, text: string): number {
    const { encoding, factor } = modelTokenization(model);
    return scaleCount(this.encoders.count(encoding, text), factor);
  }

  /** Tokens in a plain text (no chat overhead); in a worker from workerThresholdChars up. */
  async countText(model: string, text: string): Promise<number> {
    const { encoding, factor } = modelTokenization(model);
    if (!this.offloads(text.length)) return scaleCount(this.encoders.count(encoding, text), factor);
    return scaleCount(await this.submit(encoding, [text]), factor);
  }

  /** Prompt tokens of a chat request, overheads included, always counted inline. */
  countChatSync(model: string, body: ChatBody): number {
    const { encoding, factor } = modelTokenization(model);
    const plan = planChat(encoding, body);
    return scaleCount(plan.fixed + countTexts(this.encoders, encoding, plan.texts), factor);
  }

  /** Prompt tokens of a chat request, overheads included; in a worker when its texts are large. */
  async countChat(model: string, body: ChatBody): Promise<number> {
    const { encoding, factor } = modelTokenization(model);
    const plan = planChat(encoding, body);
    const texts = this.offloads(plan.chars)
      ? await this.submit(encoding, plan.texts)
      : countTexts(this.encoders, encoding, plan.texts);
    return scaleCount(plan.fixed + texts, factor);
  }

  /** For metrics: workers alive, jobs running and waiting, restarts so far. */
  stats(): { workers: number; busy: number; queued: number; restarts: number } {
    const live = this.slots.filter((slot) => slot !== undefined);
    return {
      workers: live.length,
      busy: live.filter((slot) => slot.job !== undefined).length,
      queued: this.queue.length,
      restarts: this.restarts,
    };
  }

  /** Stops the workers; counts still waiting for one are rejected. Inline counting keeps working. */
  async close(): Promise<void> {
    this.closed = true;
    const reason = new TokenCountError('token counter closed');
    for (const job of this.queue.splice(0)) job.reject(reason);
    await Promise.all(
      this.slots.map(async (slot) => {
        if (!slot) return;
        slot.stopReason ??= reason;
        await slot.worker.terminate();
      }),
    );
  }

  private offloads(chars: number): boolean {
    return this.workers > 0 && chars >= this.workerThresholdChars;
  }

  private submit(encoding: EncodingName, texts: string[]): Promise<number> {
    if (this.closed) return Promise.reject(new TokenCountError('token counter closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, encoding, texts, resolve, reject });
      this.pump();
    });
  }

  /** Hands queued jobs to idle ready workers; restarts missing workers while jobs wait. */
  private pump(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s !== undefined && s.ready && s.job === undefined);
      if (!slot) break;
      this.dispatch(slot, this.queue.shift()!);
    }
    if (this.queue.length === 0 || this.closed) return;
    this.slots.forEach((slot, index) => {
      // A failed (re)start already told its waiting jobs; the next one retries here.
      if (!slot) this.start(index).catch(() => undefined);
    });
  }

  private dispatch(slot: Slot, job: QueuedJob): void {
    slot.job = job;
    slot.worker.ref();
    slot.timer = setTimeout(() => {
      slot.stopReason = new TokenCountError(`token count timed out after ${this.jobTimeoutMs} ms`);
      void slot.worker.terminate();
    }, this.jobTimeoutMs);
    slot.timer.unref();
    const message: TokenJob = { id: job.id, encoding: job.encoding, texts: job.texts };
    slot.worker.postMessage(message);
  }

  private finish(slot: Slot): QueuedJob | undefined {
    const job = slot.job;
    clearTimeout(slot.timer);
    slot.job = undefined;
    slot.timer = undefined;
    return job;
  }

  /** Starts worker `index`; resolves when it has loaded its encodings, rejects if it dies first. */
  private start(index: number): Promise<void> {
    const worker = spawnWorker({ nice: this.workerNice });
    const slot: Slot = {
      worker,
      ready: false,
      job: undefined,
      timer: undefined,
      stopReason: undefined,
      crash: undefined,
    };
    this.slots[index] = slot;
    this.onWorker?.(worker);

    return new Promise((resolve, reject) => {
      worker.on('message', (message: TokenWorkerMessage) => {
        if (message.type === 'ready') {
          slot.ready = true;
          resolve();
          this.pump();
          if (slot.job === undefined) worker.unref();
          return;
        }
        if (slot.job?.id !== message.id) return;
        const job = this.finish(slot)!;
        worker.unref();
        if (message.type === 'done') job.resolve(message.tokens);
        else job.reject(new TokenCountError(`token count failed: ${message.error}`));
        this.pump();
      });
      worker.on('error', (err) => {
        slot.crash = err;
      });
      worker.on('exit', (code) => {
        if (this.slots[index] === slot) this.slots[index] = undefined;
        const wasReady = slot.ready;
        slot.ready = false;
        const error =
          slot.stopReason ??
          new TokenCountError(
            `token worker exited with code ${code}${slot.crash ? `: ${slot.crash.message}` : ''}`,
          );
        if (!wasReady) reject(error);
        this.finish(slot)?.reject(error);
        if (this.closed) return;
        if (wasReady) {
          this.restarts++;
          this.log?.warn({ err: error, restarts: this.restarts }, 'token worker died; restarting it');
          this.start(index).catch(() => undefined);
        } else if (this.slots.every((s) => s === undefined)) {
          // It died while loading: it would again. Fail what waits rather than retry in a loop.
          this.log?.warn({ err: error }, 'token worker failed to start');
          for (const job of this.queue.splice(0)) job.reject(error);
        }
      });
    });
  }
}
