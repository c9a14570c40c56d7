import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, parseConfig, parseWorkerCount } from '../../../src/config/load.js';

const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail('expected a ConfigError');
};

describe('config loading', () => {
  it('interpolates ${ENV} and ${ENV:-default} inside string values', () => {
    const c = parseConfig(
      'providers:\n  openai:\n    type: openai\n    apiKey: ${KEY}\n    baseUrl: ${BASE:-http://localhost:1234/v1/}\n',
      't',
      { KEY: 'sk-1' },
    );
    assert.equal(c.providers.openai?.apiKey, 'sk-1');
    assert.equal(c.providers.openai?.baseUrl, 'http://localhost:1234/v1');
  });

  it('reports every problem at once, each with its path', () => {
    const problems = problemsOf(() =>
      parseConfig(
        [
          'server: { port: "80", colour: blue }',
          'providers: { p: { type: martian } }',
          'models: { m: { deployments: [] } }',
          'teams: [{ name: "bad name!", keys: [{ id: k, sha256: nothex }] }]',
        ].join('\n'),
        't',
        {},
      ),
    );
    const text = problems.join('\n');
    assert.match(text, /server\.port: must be integer/);
    assert.match(text, /server: unknown key 'colour'/);
    assert.match(text, /providers\.p\.type: must be one of "openai"/);
    assert.match(text, /models\.m\.deployments: must NOT have fewer than 1 items/);
    assert.match(text, /teams\[0\]\.name: must match pattern/);
    assert.match(text, /teams\[0\]\.keys\[0\]\.sha256: must match pattern/);
  });

  it('rejects references to undeclared providers and models, and keys shared by two teams', () => {
    const sha = 'a'.repeat(64);
    const problems = problemsOf(() =>
      parseConfig(
        `providers: { p: { type: openai } }
models: { m: { deployments: [{ provider: q }] } }
teams:
  - { name: a, keys: [{ id: k1, sha256: ${sha} }], models: [m, nope] }
  - { name: b, keys: [{ id: k2, sha256: ${sha} }] }
`,
        't',
        {},
      ),
    );
    assert.ok(
      problems.includes("models.m.deployments[0].provider: unknown provider 'q'"),
      problems.join('\n'),
    );
    assert.ok(problems.includes("teams[0].models[1]: model 'nope' is not declared under models"));
    assert.ok(problems.includes("teams[1].keys[0].sha256: the same key is already used by team 'a'"));
  });

  it('reports a missing environment variable by path', () => {
    const problems = problemsOf(() =>
      parseConfig('providers:\n  o:\n    type: openai\n    apiKey: ${NOPE}\n', 't', {}),
    );
    assert.match(problems[0]!, /^providers\.o\.apiKey: environment variable NOPE is not set/);
  });

  it('reports YAML syntax errors', () => {
    const problems = problemsOf(() => parseConfig('server: [unclosed', 't', {}));
    assert.match(problems[0]!, /^YAML/);
  });

  it('applies defaults and env overrides', () => {
    const c = parseConfig('{}', 't', { TOLLGATE_PORT: '9000', TOLLGATE_HOST: '0.0.0.0' });
    assert.equal(c.server.port, 9000);
    assert.equal(c.server.host, '0.0.0.0');
    assert.equal(c.server.logPrompts, false);
    assert.deepEqual(c.teams, []);
    assert.ok(Object.isFrozen(c));
  });

  it('builds a zero config from the environment when there is no file', () => {
    const c = loadConfig({ env: { OPENAI_API_KEY: 'sk-env' } });
    assert.equal(c.source, 'environment');
    assert.equal(c.providers.openai?.apiKey, 'sk-env');
    assert.equal(c.providers.openai?.baseUrl, 'https://api.openai.com/v1');
    assert.equal(c.models['*']?.deployments[0]?.provider, 'openai');
    assert.equal(c.models['*']?.deployments[0]?.model, undefined);
  });

  it('starts with no providers at all when the environment has no key', () => {
    const c = loadConfig({ env: {} });
    assert.deepEqual(c.providers, {});
    assert.deepEqual(c.models, {});
  });

  it('fails for an explicit path that does not exist', () => {
    const problems = problemsOf(() => loadConfig({ path: '/nonexistent/tollgate.yaml', env: {} }));
    assert.match(problems[0]!, /file not found/);
  });

  it('defaults a deployment model to the model name, and teams to every model', () => {
    const c = parseConfig(
      'providers: { p: { type: openai } }\nmodels: { gpt-4o: { deployments: [{ provider: p }] } }\n' +
        `teams: [{ name: a, keys: [{ id: k, sha256: ${'b'.repeat(64)} }] }]\n`,
      't',
      {},
    );
    const d = c.models['gpt-4o']?.deployments[0];
    assert.deepEqual([d?.provider, d?.model, d?.weight], ['p', 'gpt-4o', 1]);
    assert.equal(c.models['gpt-4o']?.strategy, 'priority');
    assert.deepEqual(c.teams[0]?.models, ['*']);
  });
});

describe('interpolated scalars', () => {
  it('reads a value that is one ${VAR} alone as a number or boolean, and keeps mixed text a string', () => {
    const c = parseConfig(
      'server:\n  port: ${PORT}\n  trustProxy: ${TP:-false}\n  host: "${H}"\nproviders: { p: { type: openai, apiKey: "${N}x" } }',
      't',
      { PORT: '9090', H: '127.0.0.1', N: '12' },
    );
    assert.equal(c.server.port, 9090);
    assert.equal(c.server.trustProxy, false);
    assert.equal(c.providers.p?.apiKey, '12x');
  });
});

describe('store, cache and limits config', () => {
  it('picks the memory store without Redis, and Redis when REDIS_URL is set', () => {
    assert.equal(parseConfig('{}', 't', {}).store.type, 'memory');
    const c = parseConfig('{}', 't', { REDIS_URL: 'redis://127.0.0.1:6379/2' });
    assert.equal(c.store.type, 'redis');
    assert.equal(c.store.redis?.url, 'redis://127.0.0.1:6379/2');
    assert.equal(c.store.redis?.onUnavailable, 'open');
    assert.equal(c.store.redis?.keyPrefix, 'tg:');
  });

  it('rejects a redis store with nothing to connect to', () => {
    const problems = problemsOf(() => parseConfig('store: { type: redis }', 't', {}));
    assert.match(problems[0]!, /^store\.redis: store\.type is redis but no url/);
  });

  it('reads team limits and cache policies, defaulting the rest', () => {
    const c = parseConfig(
      `providers: { p: { type: openai } }
models: { m: { deployments: [{ provider: p, rpm: 100, tpm: 5000 }] } }
cache: { ttlSeconds: 60, models: { m: { ttlSeconds: 10 } } }
teams:
  - name: a
    keys: [{ id: k, sha256: ${'c'.repeat(64)} }]
    limits: { rpm: 10, tpm: 1000, concurrency: 2, perKey: { rpm: 5 }, models: { m: { tpm: 500 } } }
    cache: { enabled: false }
`,
      't',
      {},
    );
    const limits = c.teams[0]!.limits!;
    assert.deepEqual(
      { rpm: limits.rpm, tpm: limits.tpm, concurrency: limits.concurrency, maxWaitMs: limits.maxWaitMs },
      { rpm: 10, tpm: 1000, concurrency: 2, maxWaitMs: 0 },
    );
    assert.deepEqual(limits.perKey, { rpm: 5, tpm: undefined });
    assert.deepEqual(limits.models, { m: { rpm: undefined, tpm: 500 } });
    assert.equal(c.teams[0]!.cache.enabled, false);
    assert.equal(c.cache.ttlSeconds, 60);
    assert.equal(c.cache.models.m?.ttlSeconds, 10);
    assert.equal(c.cache.cacheSampled, false);
    assert.equal(c.models.m?.deployments[0]?.tpm, 5000);
    assert.equal(c.limits.bytesPerToken, 3);
  });
});

describe('routing config', () => {
  it('reads aliases, rules, fallbacks and retry policy, and checks every reference', () => {
    const ok = parseConfig(
      `providers: { p: { type: openai } }
models:
  a: { deployments: [{ provider: p, weight: 2, contextWindow: 8000, prices: { inputPerMillion: 1, outputPerMillion: 2 } }], fallbacks: [b] }
  b: { deployments: [{ provider: p }], strategy: weighted }
aliases: { cheap: { models: [a, b], strategy: cheapest } }
routing:
  rules: [{ when: { tiers: [free], headers: { X-Task: summarize } }, use: cheap }]
  retry: { maxAttempts: 5 }
teams: [{ name: t, tier: free, keys: [{ id: k, sha256: ${'d'.repeat(64)} }], models: [cheap] }]
`,
      't',
      {},
    );
    assert.deepEqual(ok.aliases.cheap, { name: 'cheap', models: ['a', 'b'], strategy: 'cheapest' });
    assert.deepEqual(ok.routing.rules[0]?.when.headers, { 'x-task': 'summarize' });
    assert.equal(ok.routing.retry.maxAttempts, 5);
    assert.equal(ok.routing.retry.baseDelayMs, 250);
    assert.equal(ok.models.a?.deployments[0]?.weight, 2);
    assert.deepEqual(ok.models.a?.fallbacks, ['b']);
    assert.equal(ok.teams[0]?.tier, 'free');

    const problems = problemsOf(() =>
      parseConfig(
        `providers: { p: { type: openai } }
models: { a: { deployments: [{ provider: p }], fallbacks: [zz] } }
aliases: { a: { models: [nope] } }
routing: { rules: [{ use: missing }] }
`,
        't',
        {},
      ),
    );
    assert.ok(
      problems.includes("models.a.fallbacks[0]: model 'zz' is not declared under models"),
      problems.join('\n'),
    );
    assert.ok(problems.includes('aliases.a: the name is already a model'));
    assert.ok(problems.includes("aliases.a.models[0]: model 'nope' is not declared under models"));
    assert.ok(problems.includes("routing.rules[0].use: 'missing' is neither a model nor an alias"));
  });
});

describe('zero config with several provider keys', () => {
  it('routes claude-* to Anthropic and every other name to OpenAI', () => {
    const c = loadConfig({ env: { OPENAI_API_KEY: 'sk-o', ANTHROPIC_API_KEY: 'sk-a' } });
    assert.equal(c.providers.anthropic?.type, 'anthropic');
    assert.equal(c.providers.anthropic?.baseUrl, 'https://api.anthropic.com/v1');
    assert.equal(c.models['claude-*']?.deployments[0]?.provider, 'anthropic');
    assert.equal(c.models['*']?.deployments[0]?.provider, 'openai');
  });

  it('sends everything to Anthropic when it is the only key', () => {
    const c = loadConfig({ env: { ANTHROPIC_API_KEY: 'sk-a' } });
    assert.equal(c.models['*']?.deployments[0]?.provider, 'anthropic');
    assert.equal(c.models['claude-*'], undefined);
  });
});

describe('config/tollgate.example.yaml', () => {
  it('is a valid config (it once held an unquoted sha256 that YAML read as the number 0)', () => {
    const c = loadConfig({ path: 'config/tollgate.example.yaml', env: { OPENAI_API_KEY: 'sk-example' } });
    assert.equal(c.teams[0]?.keys[0]?.sha256, '0'.repeat(64));
    assert.equal(c.teams[0]?.budgets.length, 2);
    assert.equal(c.tiers.free?.maxOutputTokens, 1000);
  });
});

describe('server.workers', () => {
  it('is unset by default: one process, no cluster primary', () => {
    assert.equal(parseConfig('', 't', {}).server.workers, undefined);
  });

  it('reads a count or auto (one per core) from the file, and TOLLGATE_WORKERS over it', () => {
    const cores = availableParallelism();
    assert.equal(parseConfig('server: { workers: 3 }', 't', {}).server.workers, 3);
    assert.equal(parseConfig('server: { workers: auto }', 't', {}).server.workers, cores);
    assert.equal(parseConfig('server: { workers: 3 }', 't', { TOLLGATE_WORKERS: '2' }).server.workers, 2);
    assert.equal(parseConfig('', 't', { TOLLGATE_WORKERS: 'auto' }).server.workers, cores);
  });

  it('rejects a count that is not one, naming where it came from', () => {
    assert.match(
      problemsOf(() => parseConfig('server: { workers: 0 }', 't', {})).join('\n'),
      /server\.workers/,
    );
    assert.match(
      problemsOf(() => parseConfig('server: { workers: many }', 't', {})).join('\n'),
      /server\.workers/,
    );
    assert.match(
      problemsOf(() => parseConfig('', 't', { TOLLGATE_WORKERS: '2.5' })).join('\n'),
      /TOLLGATE_WORKERS: not a worker count/,
    );
  });

  it('parses the --workers value as the config does', () => {
    assert.equal(parseWorkerCount('4'), 4);
    assert.equal(parseWorkerCount('auto'), availableParallelism());
    for (const bad of ['0', '-1', '1e3', ' 2', '', 'two', '1025'])
      assert.equal(parseWorkerCount(bad), undefined, bad);
  });
});
