import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import { GatewayError } from '../../../src/errors.js';
import { compose } from '../../../src/pipeline/index.js';
import { DeploymentStats } from '../../../src/pipeline/routing/stats.js';
import { createRouteStage } from '../../../src/pipeline/stages/route.js';
import type { Outcome, PipelineContext, Stage } from '../../../src/pipeline/types.js';
import type { Team } from '../../../src/teams/registry.js';

const team = (models: string[]): Team => ({
  name: 't',
  models: new Set(models.filter((m) => m !== '*')),
  allModels: models.includes('*'),
});

const ctxFor = (model: string, t: Team, headers: Record<string, string> = {}): PipelineContext =>
  ({
    model,
    team: t,
    headers,
    logFields: {},
    candidates: [],
    deployment: undefined,
    attempts: 0,
  }) as unknown as PipelineContext;

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
    const out = await createRouteStage(config, new DeploymentStats())(
      ctxFor('gpt-4o', team(['*'])),
      async (c) => {
        seen.push(c);
        return ok;
      },
    );
    assert.equal(out, ok);
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0]!.candidates, [
      { id: 'a/gpt-4o-2024-08-06', provider: 'a', model: 'gpt-4o-2024-08-06', weight: 1 },
      { id: 'b/gpt-4o', provider: 'b', model: 'gpt-4o', weight: 1 },
    ]);
  });

  it('answers 404 model_not_found for an unknown model and for one the team may not use, without calling next', async () => {
    for (const [model, t] of [
      ['nope', team(['*'])],
      ['gpt-4o', team(['gpt-4o-mini'])],
    ] as const) {
      await assert.rejects(
        createRouteStage(config, new DeploymentStats())(ctxFor(model, t), () =>
          assert.fail('next must not run'),
        ),
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
    await createRouteStage(wild, new DeploymentStats())(ctxFor('llama-3', team(['*'])), async (c) => {
      seen = c;
      return ok;
    });
    assert.deepEqual(seen?.candidates, [{ id: 'a/llama-3', provider: 'a', model: 'llama-3', weight: 1 }]);
  });
});

describe('routing rules, aliases and fallbacks', () => {
  const sha = 'e'.repeat(64);
  const config = parseConfig(
    `providers: { a: { type: openai }, b: { type: openai } }
models:
  big: { deployments: [{ provider: a }], fallbacks: [small] }
  small: { deployments: [{ provider: b }] }
aliases:
  cheap: { models: [small, big], strategy: cheapest }
routing:
  rules:
    - { when: { tiers: [free], models: [big] }, use: small }
    - { when: { route: batch }, use: cheap }
    - { when: { headers: { x-task: summarize } }, use: small }
teams:
  - { name: freebie, tier: free, keys: [{ id: k1, sha256: ${'f'.repeat(64)} }] }
  - { name: payer, tier: pro, keys: [{ id: k2, sha256: ${sha} }] }
`,
    't',
    {},
  );
  const run = async (model: string, teamName: string, headers: Record<string, string> = {}) => {
    let seen: PipelineContext | undefined;
    const c = ctxFor(model, { ...team(['*']), name: teamName }, headers);
    await createRouteStage(config, new DeploymentStats())(c, async (x) => {
      seen = x;
      return ok;
    });
    return { ids: seen!.candidates.map((d) => d.id), route: c.logFields.route };
  };

  it('appends the fallback models after the deployments of the model', async () => {
    assert.deepEqual((await run('big', 'payer')).ids, ['a/big', 'b/small']);
  });

  it('sends a free-tier team to the cheaper model by rule, and logs the route', async () => {
    assert.deepEqual(await run('big', 'freebie'), { ids: ['b/small'], route: 'small' });
  });

  it('routes by the x-tollgate-route header and by a task header', async () => {
    assert.deepEqual((await run('big', 'payer', { 'x-tollgate-route': 'batch' })).ids, ['b/small', 'a/big']);
    assert.deepEqual((await run('big', 'payer', { 'x-task': 'summarize' })).ids, ['b/small']);
  });

  it('serves an alias from the deployments of its models', async () => {
    assert.deepEqual((await run('cheap', 'payer')).ids, ['b/small', 'a/big']);
  });
});

describe('prefix routes', () => {
  it('picks the longest matching prefix, then the catch-all', async () => {
    const c = parseConfig(
      "providers: { o: { type: openai }, a: { type: openai } }\nmodels:\n  'claude-*': { deployments: [{ provider: a }] }\n  'claude-3-*': { deployments: [{ provider: o, model: legacy }] }\n  '*': { deployments: [{ provider: o }] }\n",
      't',
      {},
    );
    const pick = async (model: string) => {
      let seen: PipelineContext | undefined;
      await createRouteStage(c, new DeploymentStats())(ctxFor(model, team(['*'])), async (x) => {
        seen = x;
        return ok;
      });
      return seen!.candidates[0]!.id;
    };
    assert.equal(await pick('claude-sonnet-4-5'), 'a/claude-sonnet-4-5');
    assert.equal(await pick('claude-3-haiku'), 'o/legacy');
    assert.equal(await pick('gpt-4o'), 'o/gpt-4o');
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
