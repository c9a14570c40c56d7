// Attempts: calls the candidates route ordered until one answers. Reads ctx.candidates, sets
// ctx.deployment and ctx.attempts for each try. A candidate cooling down, over its own quota, or
// too small for the request (context window) is skipped; a retryable failure (408, 409, 429,
// 5xx, connection errors, timeouts) is retried with exponential backoff and full jitter, or at
// the upstream's Retry-After when that is short enough, then the next candidate is tried. Never
// on other 4xx. A stream is retried only before its first byte reaches the client: the first
// chunk is awaited here, and a failure after it is the SSE writer's error event. All attempts
// share one deadline. When every candidate is cooling down or over quota, the answer is a
// 429/503 whose Retry-After is the soonest time one recovers.
import type { Logger } from 'pino';
import type { LimitsConfig, RoutingConfig } from '../../config/schema.js';
import { errors, GatewayError } from '../../errors.js';
import { ClientAbortedError } from '../../providers/upstream-client.js';
import type { Keys } from '../../stores/keys.js';
import { abortableSleep } from '../sleep.js';
import type { Store } from '../../stores/store.js';
import { estimateTokens } from '../limits/estimate.js';
import { ContextGuard } from '../routing/context-guard.js';
import type { TokenCounting } from './accounting.js';
import { formatDuration } from '../limits/headers.js';
import { usedTokens } from '../limits/reconcile.js';
import type { Cooldowns } from '../routing/cooldown.js';
import { reserveQuota } from '../routing/quota.js';
import type { DeploymentStats } from '../routing/stats.js';
import type { Deployment, Outcome, PipelineContext, Stage } from '../types.js';
import type { Cancellation } from '../abort.js';
import { ChunkPipe } from '../chunk-pipe.js';

export interface AttemptsDeps {
  store: Store;
  keys: Keys;
  log: Logger;
  cooldowns: Cooldowns;
  stats: DeploymentStats;
  random?: () => number;
  sleep?: (ms: number, signal: Cancellation) => Promise<void>;
  /** Exact counts for the context-window guard near a window; without it the upstream decides. */
  tokens?: TokenCounting | undefined;
  /** What the metrics count: failed attempts, retries on one deployment, moves to another. */
  events?: AttemptEvents;
}

export interface AttemptEvents {
  upstreamError(deploymentId: string, code: string): void;
  retry(deploymentId: string): void;
  fallback(fromDeploymentId: string, toDeploymentId: string): void;
}

/** Tries on one deployment before moving to the next candidate. */
const TRIES_PER_DEPLOYMENT = 2;

export function createAttemptsStage(deps: AttemptsDeps, routing: RoutingConfig, limits: LimitsConfig): Stage {
  const { log, cooldowns, stats } = deps;
  const random = deps.random ?? Math.random;
  const sleep = deps.sleep ?? abortableSleep;
  const { maxAttempts, baseDelayMs, maxDelayMs, maxRetryAfterMs } = routing.retry;

  return async function attemptsStage(ctx, next) {
    const deadline = Date.now() + routing.deadlineMs;
    ctx.deadlineAt = deadline;
    const estimate = estimateTokens(ctx, limits);
    let soonestMs = Number.POSITIVE_INFINITY;
    let skippedForContext = 0;
    const guard = new ContextGuard(ctx, estimate, deps.tokens);
    let lastError: GatewayError | undefined;
    const tried = new Set<string>();
    let previous: Deployment | undefined;

    for (const dep of ctx.candidates) {
      const cooling = cooldowns.remainingMs(dep.id);
      if (cooling > 0) {
        soonestMs = Math.min(soonestMs, cooling);
        continue;
      }
      if (dep.contextOnly && skippedForContext === 0) continue;
      if (!(await guard.fits(dep))) {
        skippedForContext += 1;
        continue;
      }
      for (let tryHere = 0; tryHere < TRIES_PER_DEPLOYMENT; tryHere++) {
        if (ctx.attempts >= maxAttempts || Date.now() >= deadline) return fail();
        const quota = await reserveQuota(deps, dep, estimate, ctx.reqId);
        if (!quota.admitted) {
          soonestMs = Math.min(soonestMs, quota.retryAfterMs);
          break;
        }
        if (quota.tokensLeftShare !== undefined) stats.recordQuota(dep.id, quota.tokensLeftShare, 1);
        if (previous) {
          if (previous.id === dep.id) deps.events?.retry(dep.id);
          else deps.events?.fallback(previous.id, dep.id);
        }
        previous = dep;
        ctx.deployment = dep;
        ctx.attempts += 1;
        tried.add(dep.id);
        const started = performance.now();
        const ended = stats.start(dep.id);
        try {
          const outcome = await firstByte(await next(ctx));
          const ms = performance.now() - started;
          stats.recordTtft(dep.id, ms);
          // The answering attempt is described by the request's own line (deployment, status,
          // attempts, attempt_ms); only failed attempts get lines of their own.
          ctx.logFields.attempt_ms = Math.round(ms * 100) / 100;
          outcome.headers['x-tollgate-attempts'] = String(ctx.attempts);
          return settleAfter(outcome, quota.settle, ended);
        } catch (err) {
          ended();
          quota.settle(0);
          if (err instanceof ClientAbortedError || ctx.signal.aborted) throw err;
          const ge = err instanceof GatewayError ? err : errors.internal(err);
          logAttempt(log, ctx, dep, ge, started);
          deps.events?.upstreamError(dep.id, ge.code ?? String(ge.status));
          if (ge.code === 'context_length_exceeded') {
            // Too long for this one: a larger window further down the list may still take it.
            skippedForContext += 1;
            lastError = ge;
            break;
          }
          if (!isRetryable(ge)) throw ge;
          lastError = ge;
          cooldowns.recordFailure(dep.id);
          const asked = ge.retryAfterMs;
          if (asked !== undefined && asked > maxRetryAfterMs) {
            // The upstream wants a long pause: let this deployment rest, try the next one now.
            if (ge.status === 429)
              cooldowns.start(dep.id, asked, `429 with Retry-After ${formatDuration(asked)}`);
            soonestMs = Math.min(soonestMs, asked);
            break;
          }
          if (tryHere + 1 >= TRIES_PER_DEPLOYMENT) break;
          const wait = asked ?? fullJitter(baseDelayMs, maxDelayMs, tryHere, random);
          if (Date.now() + wait >= deadline) return fail();
          await sleep(wait, ctx.signal);
        }
      }
    }
    return fail();

    /** Out of candidates, attempts or time: the most useful error we have. */
    function fail(): never {
      if (lastError && !Number.isFinite(soonestMs)) {
        // One deployment: its own error (status, code, Retry-After) says most. Several: none answered.
        if (tried.size <= 1) throw withAttempts(lastError, ctx);
        throw withAttempts(
          errors.upstreamUnavailable(`${tried.size} deployments`, `last error: ${lastError.message}`),
          ctx,
        );
      }
      if (Number.isFinite(soonestMs)) {
        throw errors.rateLimited({
          dimension: 'requests',
          retryAfterMs: soonestMs,
          headers: { 'x-tollgate-attempts': String(ctx.attempts) },
          message: `Every deployment of model ${ctx.model} is cooling down or over its quota. Please try again in ${formatDuration(soonestMs)}.`,
        });
      }
      if (skippedForContext > 0) {
        if (lastError?.code === 'context_length_exceeded') throw withAttempts(lastError, ctx);
        throw errors.contextLengthExceeded(ctx.model, guard.neededTokens);
      }
      if (lastError) throw lastError;
      throw errors.upstreamTimeout(
        'every candidate',
        'the request deadline passed before an attempt could start',
      );
    }
  };
}

/** 408, 409, 429, 5xx, connection trouble and timeouts: worth another try. Never other 4xx. */
function isRetryable(e: GatewayError): boolean {
  if (e.code === 'upstream_auth_failed') return false;
  return e.retryable;
}

/** Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^n)]. */
export function fullJitter(baseMs: number, capMs: number, n: number, random: () => number): number {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** n));
}

/**
 * Waits for a stream's first chunk: until then a failure can still be retried elsewhere. The
 * chunk is then handed on first, untouched.
 */
async function firstByte(outcome: Outcome): Promise<Outcome> {
  if (outcome.kind !== 'stream') return outcome;
  const chunks = ChunkPipe.of(outcome.chunks);
  await chunks.peek();
  return { ...outcome, chunks };
}

/** Reconciles the deployment's quota and ends its in-flight count when the answer is over. */
function settleAfter(outcome: Outcome, settle: (used: number) => void, ended: () => void): Outcome {
  if (outcome.kind === 'json') {
    ended();
    settle(outcome.usage ? usedTokens(outcome.usage) : 0);
    return outcome;
  }
  const { usage } = outcome;
  const chunks = ChunkPipe.of(outcome.chunks).tap({
    end() {
      ended();
      void usage.then((u) => settle(u ? usedTokens(u) : 0));
    },
  });
  return { ...outcome, chunks };
}

function withAttempts<E extends GatewayError>(e: E, ctx: PipelineContext): E {
  e.headers['x-tollgate-attempts'] = String(ctx.attempts);
  return e;
}

/** One line per failed attempt: which deployment, what it answered, how long it took. */
function logAttempt(
  log: Logger,
  ctx: PipelineContext,
  dep: Deployment,
  err: GatewayError,
  started: number,
): void {
  log.info(
    {
      reqId: ctx.reqId,
      deployment: dep.id,
      attempt: ctx.attempts,
      status: (err as { upstreamStatus?: number }).upstreamStatus ?? err.status,
      ms: Math.round((performance.now() - started) * 100) / 100,
      errorClass: err.code ?? `status_${err.status}`,
    },
    'attempt failed',
  );
}
