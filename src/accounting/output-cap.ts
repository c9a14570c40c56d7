// Output caps by tier: a team's tier may cap the output tokens one request can ask for (free 200,
// pro 1000, ...). A request asking for more is clamped to the cap (or refused, by config), and a
// request asking for nothing gets the cap as max_completion_tokens (otherwise the cap would not
// bind: the model's own maximum applies). The response says what happened in
// x-tollgate-output-cap. Runs before the pipeline, so the cache key and the reservation see the
// capped request.
import type { TierConfig } from '../config/schema.js';
import { errors } from '../errors.js';

export const OUTPUT_CAP_HEADER = 'x-tollgate-output-cap';

export interface CappedRequest {
  body: Record<string, unknown>;
  rawBody: Buffer;
  /** The x-tollgate-output-cap value, when a cap applied. */
  header: string | undefined;
}

const FIELDS = ['max_completion_tokens', 'max_tokens'] as const;

export function applyOutputCap(
  tierName: string | undefined,
  tier: TierConfig | undefined,
  body: Record<string, unknown>,
  rawBody: Buffer,
): CappedRequest {
  const cap = tier?.maxOutputTokens;
  if (cap === undefined || tierName === undefined) return { body, rawBody, header: undefined };
  const asked = FIELDS.filter((f) => typeof body[f] === 'number');
  const over = asked.filter((f) => (body[f] as number) > cap);
  if (asked.length > 0 && over.length === 0) return { body, rawBody, header: `${cap}; within` };
  if (over.length > 0 && tier!.onExceed === 'reject') {
    throw errors.outputCapExceeded(over[0]!, body[over[0]!] as number, cap, tierName);
  }
  const capped: Record<string, unknown> = { ...body };
  if (asked.length === 0) capped.max_completion_tokens = cap;
  for (const f of over) capped[f] = cap;
  const header =
    asked.length === 0
      ? `${cap}; applied`
      : `${cap}; clamped from ${Math.max(...over.map((f) => body[f] as number))}`;
  return { body: capped, rawBody: Buffer.from(JSON.stringify(capped)), header };
}
