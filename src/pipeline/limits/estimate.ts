// The token reservation made at admission: a cheap, conservative bound, reconciled with the
// upstream's real usage when the response ends. Exact BPE counting costs about 3 ms of CPU for a
// 2 KB prompt and seconds for 1 MB, so the request path never tokenises; it divides the body's
// byte length by `bytesPerToken` (see config/defaults.ts for why 3) and adds the completion the
// request may produce.
import type { LimitsConfig } from '../../config/schema.js';
import type { PipelineContext } from '../types.js';

export interface TokenEstimate {
  prompt: number;
  completion: number;
  total: number;
}

export function estimateTokens(ctx: PipelineContext, limits: LimitsConfig): TokenEstimate {
  const prompt = Math.ceil(ctx.rawBody.length / limits.bytesPerToken);
  if (ctx.endpoint === 'embeddings') return { prompt, completion: 0, total: prompt };
  const body = ctx.body;
  const max = positive(body.max_completion_tokens) ?? positive(body.max_tokens);
  const n = positive(body.n) ?? 1;
  const completion = (max ?? limits.expectedCompletionTokens) * n;
  return { prompt, completion, total: prompt + completion };
}

function positive(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
}
