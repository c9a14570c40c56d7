import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ContextGuard } from '../../../src/pipeline/routing/context-guard.js';
import type { TokenCounting } from '../../../src/pipeline/stages/accounting.js';
import type { Deployment } from '../../../src/pipeline/types.js';
import { makePipelineContext } from '../../helpers/pipeline-context.js';

const dep = (contextWindow: number | undefined, model = 'gpt-4o'): Deployment => ({
  id: `p/${model}/${contextWindow}`,
  provider: 'p',
  model,
  contextWindow,
});

/** A counter that says `prompt` tokens and remembers what it was asked. */
function counter(prompt: number | Error) {
  const calls: string[] = [];
  const tokens: TokenCounting = {
    countChat: async (model) => {
      calls.push(model);
      if (prompt instanceof Error) throw prompt;
      return prompt;
    },
    countText: async () => 0,
  };
  return { tokens, calls };
}

// A 3,000-byte body: lower bound 300 + completion, admission estimate 1,000 + completion.
const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'x'.repeat(2_950) }] };
const ctx = () => {
  const c = makePipelineContext({ model: 'gpt-4o', body });
  return Object.assign(c, { rawBody: Buffer.alloc(3_000) });
};
const estimate = { total: 1_000 + 100, completion: 100 };

describe('context-window guard', () => {
  it('decides from the byte bounds without counting, far from the window', async () => {
    const { tokens, calls } = counter(5);
    const guard = new ContextGuard(ctx(), estimate, tokens);
    assert.equal(await guard.fits(dep(undefined)), true);
    assert.equal(await guard.fits(dep(10_000)), true, 'well inside the window');
    assert.equal(await guard.fits(dep(350)), false, 'above it even at 10 bytes a token');
    assert.deepEqual(calls, []);
    assert.equal(guard.neededTokens, 400);
  });

  it('counts exactly near a window, once per model, and decides by the count', async () => {
    const { tokens, calls } = counter(700);
    const c = ctx();
    const guard = new ContextGuard(c, estimate, tokens);
    assert.equal(await guard.fits(dep(1_000)), true, '700 + 100 fits 1,000');
    assert.equal(await guard.fits(dep(790)), false, '800 does not fit 790');
    assert.deepEqual(calls, ['gpt-4o']);
    assert.equal(guard.neededTokens, 800);
    assert.equal(c.logFields.counted_prompt_tokens, 700);
    await guard.fits(dep(900, 'gpt-4'));
    assert.deepEqual(calls, ['gpt-4o', 'gpt-4'], 'another model, another encoding: counted again');
  });

  it('leaves the decision to the upstream when counting fails or is not available', async () => {
    const { tokens } = counter(new Error('worker died'));
    assert.equal(await new ContextGuard(ctx(), estimate, tokens).fits(dep(1_000)), true);
    assert.equal(await new ContextGuard(ctx(), estimate, undefined).fits(dep(1_000)), true);
  });
});
