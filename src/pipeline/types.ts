// The shapes every stage shares: the per-request context, the Outcome a stage returns, and
// the Stage/Next signatures of the onion. Nothing here does work.
import type { Logger } from 'pino';
import type { TimeoutsConfig } from '../config/schema.js';
import type { Team } from '../teams/registry.js';
import type { Cancellation } from './abort.js';
import type { PreparedAdmission } from './stages/limits.js';
import type { SettleAlso } from '../stores/store.js';

/** OpenAI's usage object; unknown fields (new details) are kept as they came. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens?: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number; audio_tokens?: number; [k: string]: unknown } | null;
  completion_tokens_details?: { reasoning_tokens?: number; [k: string]: unknown } | null;
  [k: string]: unknown;
}

/** One SSE event of a chat.completion.chunk stream: the original `data:` text, forwarded unchanged. */
export interface Chunk {
  data: string;
}

export type Endpoint = 'chat' | 'embeddings';

/** One concrete place a model can be served: a provider and the model name it knows. */
export interface Deployment {
  /** `provider/model`, used in logs and the x-tollgate-model header. */
  id: string;
  provider: string;
  model: string;
  /** The deployment's own upstream quota, per minute, when configured. */
  quota?: { rpm: number | undefined; tpm: number | undefined };
  /** Relative share for the weighted strategy (default 1). */
  weight?: number;
  /** USD per million tokens, for the cheapest strategy (and, later, accounting). */
  prices?: { inputPerMillion?: number | undefined; outputPerMillion?: number | undefined };
  /** Prompt + output tokens the model accepts, when configured. */
  contextWindow?: number;
  maxOutputTokens?: number;
  /** This deployment's own timeouts, overriding its provider's. */
  timeouts?: Partial<TimeoutsConfig>;
  /** A context-window fallback: tried only when an earlier candidate was too small. */
  contextOnly?: boolean;
}

export interface JsonOutcome {
  kind: 'json';
  status: number;
  headers: Record<string, string>;
  /** A Buffer is sent byte for byte (the upstream's own body); anything else is serialised. */
  body: Buffer | object;
  /** When `body` is the upstream's bytes: what they parsed to, for a stage that must look inside. */
  parsed?: unknown;
  usage: Usage | undefined;
}

export interface StreamOutcome {
  kind: 'stream';
  status: number;
  headers: Record<string, string>;
  chunks: AsyncIterable<Chunk>;
  /** Settles when the stream ends, fails or is aborted; undefined when no usage was seen. */
  usage: Promise<Usage | undefined>;
}

export type Outcome = JsonOutcome | StreamOutcome;

export interface PipelineContext {
  readonly reqId: string;
  readonly endpoint: Endpoint;
  readonly team: Team;
  readonly keyId: string;
  /** The model as the client asked for it. */
  readonly model: string;
  /** The parsed body (never mutated: providers build their own upstream body). */
  readonly body: Readonly<Record<string, unknown>>;
  /** The body bytes as received. */
  readonly rawBody: Buffer;
  readonly stream: boolean;
  /** The client set stream_options.include_usage: only then does it see the usage chunk. */
  readonly clientWantsUsage: boolean;
  /** The client's request headers (lower-case names), for stages steered by headers. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Extra fields for the request's log line (cache status, savings, limits, ...). */
  readonly logFields: Record<string, unknown>;
  /** Fires when the client goes away (or the gateway shuts down hard). */
  readonly signal: Cancellation;
  readonly log: Logger;
  /** Filled by the route stage. */
  candidates: Deployment[];
  /** The deployment that answered (or was last tried). */
  deployment: Deployment | undefined;
  attempts: number;
  /** When all attempts together must be over (epoch ms); set by the attempts stage. */
  deadlineAt: number | undefined;
  /** The id the request's slot and reservation are held under (holder-id.ts), made on first use. */
  holderId?: string | undefined;
  /** The budget reservation the accounting stage settles; set by the budget stage. */
  budgetLeaseId?: string | undefined;
  /**
   * The counters the request's budgets check: written with the lease's release in one call,
   * while the rest of its spend joins the team's batch.
   */
  budgetCounters?: readonly { key: string; field: string }[] | undefined;
  /**
   * A finished request's token reconciliation and slot release, left by the limits stage for the
   * accounting stage's settle call of the same turn (one Redis call instead of three). Whoever
   * takes it clears it; the limits stage runs it itself at the end of the turn otherwise.
   */
  settleAlso?: SettleAlso | undefined;
  /** The limits stage's admission, when the cache stage started it ahead of its read. */
  admission?: PreparedAdmission | undefined;
}

export type Next = (ctx: PipelineContext) => Promise<Outcome>;
export type Stage = (ctx: PipelineContext, next: Next) => Promise<Outcome>;
