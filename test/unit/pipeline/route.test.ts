import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import { GatewayError } from '../../../src/errors.js';
import { compose } from '../../../src/pipeline/index.js';
import { createRouteStage } from '../../../src/pipeline/stages/route.js';
import type { Outcome, PipelineContext, Stage } from '../../../src/pipeline/types.js';
import type { Team } from '../../../src/teams/registry.js';

const team = (models: string[]): Team => ({
  name: 't',
  models: new Set(models.filter((m) => m !== '*')),
  allModels: models.includes('*'),
});

const ctxFor = (model: string, t: Team): PipelineContext =>
  ({ model, team: t, candidates: [], deployment: undefined, attempts: 0 }) as unknown as PipelineContext;

const ok: Outcome = { kind: 'json', status: 200, headers: {}, body: {}, usage: undefined };

describe('route stage', () => {
  const config = parseConfig(
    `providers: { a: { type: openai }, b: { type: openai } }
models:
  gpt-4o: { deployments: [{ provider: a, model: gpt-4o-2024-08-06 }, { provider: b }] }
`,
    't',
    {},
  );

  it('resolves a model to its ordered deployments and calls next once', async () => {
    const seen: PipelineContext[] = [];
    const out = await createRouteStage(config)(ctxFor('gpt-4o', team(['*'])), async (c) => {
      seen.push(c);
      return ok;
    });
    assert.equal(out, ok);
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0]!.candidates, [
      { id: 'a/gpt-4o-2024-08-06', provider: 'a', model: 'gpt-4o-2024-08-06' },
      { id: 'b/gpt-4o', provider: 'b', model: 'gpt-4o' },
    ]);
  });

  it('answers 404 model_not_found for an unknown model and for one the team may not use, without calling next', async () => {
    for (const [model, t] of [
      ['nope', team(['*'])],
      ['gpt-4o', team(['gpt-4o-mini'])],
    ] as const) {
      await assert.rejects(
        createRouteStage(config)(ctxFor(model, t), () => assert.fail('next must not run')),
        (e: unknown) => e instanceof GatewayError && e.status === 404 && e.code === 'model_not_found',
      );
    }
  });

  it('sends any model through a wildcard route under its own name', async () => {
    const wild = parseConfig(
      "providers: { a: { type: openai } }\nmodels: { '*': { deployments: [{ provider: a }] } }",
      't',
      {},
    );
    let seen: PipelineContext | undefined;
    await createRouteStage(wild)(ctxFor('llama-3', team(['*'])), async (c) => {
      seen = c;
      return ok;
    });
    assert.deepEqual(seen?.candidates, [{ id: 'a/llama-3', provider: 'a', model: 'llama-3' }]);
  });
});

describe('compose', () => {
  it('runs stages outermost first, each wrapping the next', async () => {
    const order: string[] = [];
    const stage =
      (name: string): Stage =>
      async (ctx, next) => {
        order.push(`in:${name}`);
        const out = await next(ctx);
        order.push(`out:${name}`);
        return out;
      };
    await compose([stage('a'), stage('b')], async () => {
      order.push('last');
      return ok;
    })({} as PipelineContext);
    assert.deepEqual(order, ['in:a', 'in:b', 'last', 'out:b', 'out:a']);
  });
});
