// Accounting, the outermost stage: when a response is over, what it cost, attributed to team,
// key, requested model and feature. Cost comes from the upstream's usage at the answering
// deployment's price. A stream that ended without usage (the client left, the upstream failed)
// is billed for its prompt (counted exactly) plus what was actually delivered (counted), marked
// `estimated`. A cache hit costs 0 and records what it saved. Then, without making the client
// wait: the log line's fields, the spend counters and the budget reservation's release (batched
// by the SpendWriter, which also runs the threshold alerts), the ledger line and the metrics.
import { DeliveredText } from '../../accounting/delivered.js';
import type { Ledger } from '../../accounting/ledger.js';
import { microsToUsd, spendIncrements, type SpendRecord } from '../../accounting/spend.js';
import type { SpendWriter } from '../../accounting/spend-writer.js';
import { ClientAbortedError } from '../../providers/upstream-client.js';
import { atEndOfTurn } from '../../end-of-turn.js';
import { ChunkPipe } from '../chunk-pipe.js';
import { takeSettleAlso } from '../settle-also.js';
import type { Keys } from '../../stores/keys.js';
import { embeddingsText } from '../routing/context-guard.js';
import type { Deployment, Outcome, PipelineContext, Stage, StreamOutcome, Usage } from '../types.js';

export interface Pricing {
  /** Integer micro-dollars this usage costs at the deployment's price; null when unknown. */
  costMicros(deployment: Deployment, usage: Usage): number | null;
  /** The same at the price of the model as requested (what a cache hit saved); null when unknown. */
  modelCostMicros(model: string, usage: Usage): number | null;
}

export interface TokenCounting {
  countChat(model: string, body: Readonly<Record<string, unknown>>): Promise<number>;
  countText(model: string, text: string): Promise<number>;
}

/** What one request came to, for the metrics. */
export interface RequestCost {
  team: string;
  keyId: string;
  model: string;
  deployment: Deployment | undefined;
  usage: Usage | undefined;
  costMicros: number | null;
  savedMicros: number;
  estimated: boolean;
  cacheHit: boolean;
}

export interface AccountingDeps {
  keys: Keys;
  /** Writes spend in batches (and releases budget reservations with it). */
  spend: SpendWriter;
  pricing: Pricing;
  tokens: TokenCounting;
  ledger?: Ledger | undefined;
  /** Called once per request with its cost (metrics). */
  onCost?: (c: RequestCost) => void;
  now?: () => number;
}

export interface AccountingOptions {
  /** Also count cost per hour (the anomaly check reads it). */
  hourly: boolean;
}

export const FEATURE_HEADER = 'x-tollgate-feature';
const FEATURE = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$/;

export function createAccountingStage(deps: AccountingDeps, options: AccountingOptions): Stage {
  const { keys, spend, pricing, tokens, ledger } = deps;
  const now = deps.now ?? Date.now;

  /** Fills the log fields now; writes counters, ledger and alerts in the background. */
  function record(ctx: PipelineContext, usage: Usage | undefined, estimated: boolean): Usage | undefined {
    const hit = ctx.logFields.cache === 'HIT';
    let costMicros: number | null = 0;
    let savedMicros = 0;
    if (hit) {
      savedMicros = (usage && pricing.modelCostMicros(ctx.model, usage)) ?? 0;
      ctx.logFields.saved_usd = microsToUsd(savedMicros);
    } else if (usage && ctx.deployment) {
      costMicros = pricing.costMicros(ctx.deployment, usage);
    }
    ctx.logFields.cost_usd = costMicros === null ? null : microsToUsd(costMicros);
    if (estimated) ctx.logFields.estimated = true;
    if (ctx.deployment) ctx.logFields.provider = ctx.deployment.provider;
    const r: SpendRecord = {
      team: ctx.team.name,
      keyId: ctx.keyId,
      model: ctx.model,
      feature: ctx.logFields.feature as string | undefined,
      costMicros: costMicros ?? 0,
      savedMicros,
      promptTokens: hit ? 0 : (usage?.prompt_tokens ?? 0),
      completionTokens: hit ? 0 : (usage?.completion_tokens ?? 0),
      cachedTokens: hit ? 0 : (usage?.prompt_tokens_details?.cached_tokens ?? 0),
      reasoningTokens: hit ? 0 : (usage?.completion_tokens_details?.reasoning_tokens ?? 0),
    };
    // What the limits and cache stages left for this request's settle call (settle-also.ts):
    // taken now, so that their own end-of-turn fallback does not send it on its own.
    const also = takeSettleAlso(ctx);
    const spendAt = now();
    const leaseId = ctx.budgetLeaseId;
    const counters = ctx.budgetCounters;
    const cache = ctx.logFields.cache;
    const deployment = ctx.deployment;
    // The metrics, the ledger line and the spend wait for the end of the turn: a JSON answer
    // is written to its socket first (~13 µs of this per request at saturation, on every
    // answer's latency otherwise). The log line's fields above cannot wait: the line is
    // written when the response finishes, which may be before.
    atEndOfTurn(() => {
      deps.onCost?.({
        team: r.team,
        keyId: r.keyId,
        model: r.model,
        deployment,
        usage,
        costMicros,
        savedMicros,
        estimated,
        cacheHit: hit,
      });
      ledger?.append({
        time: new Date(spendAt).toISOString(),
        reqId: ctx.reqId,
        team: r.team,
        keyId: r.keyId,
        feature: r.feature,
        model: r.model,
        deployment: deployment?.id,
        cache,
        prompt_tokens: r.promptTokens,
        completion_tokens: r.completionTokens,
        cached_tokens: r.cachedTokens,
        reasoning_tokens: r.reasoningTokens,
        cost_micros: costMicros,
        saved_micros: savedMicros,
        estimated,
      });
      spend.add(r.team, leaseId, spendIncrements(keys, r, spendAt, options.hourly), counters, also);
    });
    return usage;
  }

  /** Prompt counted exactly, plus the completion actually delivered: the bill of an interrupted stream. */
  async function estimateUsage(ctx: PipelineContext, delivered: string): Promise<Usage> {
    const [prompt, completion] = await Promise.all([
      ctx.endpoint === 'chat'
        ? tokens.countChat(ctx.model, ctx.body)
        : tokens.countText(ctx.model, embeddingsText(ctx.body)),
      delivered ? tokens.countText(ctx.model, delivered) : Promise.resolve(0),
    ]);
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  }

  function accountStream(ctx: PipelineContext, outcome: StreamOutcome): StreamOutcome {
    const delivered = new DeliveredText();
    const source = outcome.chunks;
    let started = false;
    let finished!: () => void;
    const done = new Promise<void>((resolve) => (finished = resolve));
    const chunks = ChunkPipe.of(source).tap({
      start: () => (started = true),
      chunk: (c) => delivered.add(c.data),
      end: () => finished(),
    });
    const usage = outcome.usage
      .catch(() => undefined)
      .then(async (u) => {
        if (started) await done;
        if (delivered.finishReason) ctx.logFields.finish_reason = delivered.finishReason;
        if (u) return record(ctx, u, false);
        if (outcome.status !== 200) return record(ctx, undefined, false);
        return record(ctx, await estimateUsage(ctx, delivered.text()).catch(() => undefined), true);
      });
    return { ...outcome, chunks, usage };
  }

  return async function accountingStage(ctx, next) {
    const feature = featureOf(ctx);
    if (feature !== undefined) ctx.logFields.feature = feature;
    let outcome: Outcome;
    try {
      outcome = await next(ctx);
    } catch (err) {
      // No answer. An upstream error is not billed by providers; a client that left while a
      // non-stream request was generating is billed its prompt, as the provider will.
      if (err instanceof ClientAbortedError && ctx.attempts > 0 && !ctx.stream) {
        // A failed count still records the request (without usage), and records it once.
        void estimateUsage(ctx, '')
          .catch(() => undefined)
          .then((u) => record(ctx, u, true));
      } else {
        record(ctx, undefined, false);
      }
      throw err;
    }
    if (outcome.kind === 'stream') return accountStream(ctx, outcome);
    const finish = finishReasonOf(
      outcome.parsed ?? (Buffer.isBuffer(outcome.body) ? undefined : outcome.body),
    );
    if (finish) ctx.logFields.finish_reason = finish;
    if (outcome.status !== 200 || outcome.usage || ctx.logFields.cache === 'HIT') {
      record(ctx, outcome.status === 200 ? outcome.usage : undefined, false);
      return outcome;
    }
    // An upstream that reports no usage (some OpenAI-compatible servers): count prompt and answer.
    // Rare, so the reply waits for the count (inline below 8 KB): the request's line and the
    // reply then carry the estimated usage.
    const answer = answerText(outcome.parsed ?? (Buffer.isBuffer(outcome.body) ? undefined : outcome.body));
    const usage = await estimateUsage(ctx, answer).catch(() => undefined);
    record(ctx, usage, usage !== undefined);
    return { ...outcome, usage };
  };
}

/** The feature a request is for: the x-tollgate-feature header, else metadata.feature. */
function featureOf(ctx: PipelineContext): string | undefined {
  const h = ctx.headers[FEATURE_HEADER];
  const fromHeader = Array.isArray(h) ? h[0] : h;
  const metadata = ctx.body.metadata as Record<string, unknown> | null | undefined;
  const v = fromHeader ?? (typeof metadata?.feature === 'string' ? metadata.feature : undefined);
  return v !== undefined && FEATURE.test(v) ? v : undefined;
}

/** The text of a chat.completion's choices: content, refusals and tool-call arguments. */
function answerText(parsed: unknown): string {
  const choices = (parsed as { choices?: unknown } | undefined)?.choices;
  if (!Array.isArray(choices)) return '';
  const parts: string[] = [];
  for (const c of choices as { message?: Record<string, unknown> }[]) {
    const m = c?.message;
    if (!m) continue;
    if (typeof m.content === 'string') parts.push(m.content);
    if (typeof m.refusal === 'string') parts.push(m.refusal);
    if (Array.isArray(m.tool_calls)) {
      for (const t of m.tool_calls as { function?: { name?: unknown; arguments?: unknown } }[]) {
        if (typeof t?.function?.name === 'string') parts.push(t.function.name);
        if (typeof t?.function?.arguments === 'string') parts.push(t.function.arguments);
      }
    }
  }
  return parts.join('\n');
}

function finishReasonOf(parsed: unknown): string | undefined {
  const choices = (parsed as { choices?: { finish_reason?: unknown }[] } | undefined)?.choices;
  const f = Array.isArray(choices) ? choices[0]?.finish_reason : undefined;
  return typeof f === 'string' ? f : undefined;
}
