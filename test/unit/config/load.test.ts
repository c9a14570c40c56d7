import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, parseConfig } from '../../../src/config/load.js';

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
    assert.deepEqual(c.models['*']?.deployments, [{ provider: 'openai', model: undefined }]);
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
    assert.deepEqual(c.models['gpt-4o']?.deployments, [{ provider: 'p', model: 'gpt-4o' }]);
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
