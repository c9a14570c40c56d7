// The context-window guard: does a request fit a deployment's window? Two cheap bounds from the
// body's byte length settle nearly every request: above the window even at ~10 bytes a token it
// cannot fit; below 90% of the window at the admission estimate (bytes / 3) it is left to the
// upstream, as it always fits in practice. Only in between, near a window, is the prompt counted
// exactly: once per request and model (a large prompt in the counting worker, so it stalls
// nothing), plus the completion it asks for. A count that fails leaves the decision to the upstream.
import type { TokenCounting } from '../stages/accounting.js';
import type { Deployment, PipelineContext } from '../types.js';

/** Below this share of a window at the admission estimate, a request is not counted. */
const NEAR = 0.9;

export class ContextGuard {
  /** What the error message quotes: the exact count when there was one, else the lower bound. */
  neededTokens: number;
  private readonly lowerBound: number;
  private readonly estimated: number;
  private readonly completion: number;
  private readonly counts = new Map<string, Promise<number | undefined>>();

  constructor(
    private readonly ctx: PipelineContext,
    /** The admission estimate: prompt bytes / bytesPerToken plus the completion asked for. */
    estimate: { total: number; completion: number },
    private readonly tokens: TokenCounting | undefined,
  ) {
    this.estimated = estimate.total;
    this.lowerBound = Math.ceil(ctx.rawBody.length / 10) + estimate.completion;
    this.neededTokens = this.lowerBound;
    this.completion = estimate.completion;
  }

  async fits(dep: Deployment): Promise<boolean> {
    const window = dep.contextWindow;
    if (window === undefined) return true;
    if (this.lowerBound > window) return false;
    if (this.estimated <= window * NEAR || !this.tokens) return true;
    const prompt = await this.count(dep.model);
    if (prompt === undefined) return true;
    const needed = prompt + this.completion;
    this.neededTokens = needed;
    this.ctx.logFields.counted_prompt_tokens = prompt;
    return needed <= window;
  }

  private count(model: string): Promise<number | undefined> {
    let p = this.counts.get(model);
    if (!p) {
      const { ctx, tokens } = this;
      p = (
        ctx.endpoint === 'chat'
          ? tokens!.countChat(model, ctx.body)
          : tokens!.countText(model, embeddingsText(ctx.body))
      ).catch(() => undefined);
      this.counts.set(model, p);
    }
    return p;
  }
}

/** The text of an embeddings input (strings; token arrays are counted by their length). */
export function embeddingsText(body: Readonly<Record<string, unknown>>): string {
  const input = body.input;
  if (typeof input === 'string') return input;
  if (Array.isArray(input)) return input.filter((x): x is string => typeof x === 'string').join('\n');
  return '';
}
