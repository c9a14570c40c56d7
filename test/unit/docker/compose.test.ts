// docker-compose.yml checked without a Docker engine: it must validate against the Compose
// Specification's JSON schema, and the properties the deployment relies on (durable Redis, a
// read-only config mount, startup ordering on a healthy Redis, healthchecks) must be there.
// The `scale` profile has its own file, compose-scale.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  COMPOSE_TEXT,
  environmentOf,
  healthcheckTest,
  interpolateCompose,
  loadCompose,
  mountsOf,
  serviceOf,
  text,
  validateCompose as validate,
  type Json,
} from './compose.js';
import { execForm, healthcheckCommand, parseDockerfile, readRepoFile } from './dockerfile.js';

// As `docker compose up` reads it with nothing set: every `${VAR:-default}` takes its default.
const compose = loadCompose();

function service(name: string) {
  return serviceOf(compose, name);
}

describe('docker-compose.yml', () => {
  it('validates against the Compose Specification schema', () => {
    const ok = validate(compose);
    assert.equal(ok, true, JSON.stringify(validate.errors, null, 2));
  });

  it('validates with its variables set, too', () => {
    const ok = validate(loadCompose({ TOLLGATE_REPLICAS: '7', TOLLGATE_LB_PORT: '9000' }));
    assert.equal(ok, true, JSON.stringify(validate.errors, null, 2));
  });

  it('gives every variable a default, so it runs with none set', () => {
    const uses = [...COMPOSE_TEXT.matchAll(/\$\{([^}]*)\}/g)].map((m) => m[1]!);
    assert.ok(uses.length > 0, 'the file uses variables');
    for (const use of uses) assert.match(use, /^[A-Z_][A-Z0-9_]*:-[^}]+$/, use);
    assert.doesNotMatch(COMPOSE_TEXT.replace(/\$\{[^}]*\}/g, ''), /\$[A-Za-z_{]/, 'no $VAR form');
  });

  it('interpolates as Compose does', () => {
    const env = { SET: 'v', EMPTY: '' };
    assert.equal(
      interpolateCompose('${SET:-d} ${EMPTY:-d} ${UNSET:-d} ${EMPTY-d} ${UNSET-d}', env),
      'v d d  d',
    );
    assert.equal(
      interpolateCompose('$$SET $SET ${SET} ${UNSET} ${SET:+alt} ${EMPTY:+alt}', env),
      '$SET v v  alt ',
    );
    assert.throws(() => interpolateCompose('${EMPTY:?must be set}', env), /EMPTY: must be set/);
    assert.equal(interpolateCompose('replicas: ${N:-3}', {}), 'replicas: 3');
  });

  it('the validator is not vacuous: it rejects a broken file', () => {
    const broken = structuredClone(compose);
    (broken.services.tollgate!.depends_on as Record<string, Record<string, Json>>).redis!.condition =
      'service_ready';
    broken.services.redis!.not_a_compose_key = true;
    assert.equal(validate(broken), false);
    const paths = (validate.errors ?? []).map((e) => e.instancePath);
    assert.ok(paths.includes('/services/redis'), JSON.stringify(paths));
    assert.ok(
      paths.some((p) => p.startsWith('/services/tollgate/depends_on')),
      JSON.stringify(paths),
    );
  });

  it('has no obsolete top-level version key', () => {
    assert.equal('version' in compose, false);
  });

  describe('redis', () => {
    const redis = service('redis');

    it('runs redis 7 with an append-only file fsynced every second', () => {
      assert.equal(redis.image, 'redis:7-alpine');
      const command = Array.isArray(redis.command) ? redis.command.map(text).join(' ') : text(redis.command);
      assert.match(command, /^redis-server\b/);
      assert.match(command, /--appendonly yes\b/);
      assert.match(command, /--appendfsync everysec\b/);
    });

    it('keeps /data on a named volume, so the AOF survives re-creating the container', () => {
      const data = mountsOf(redis).find((m) => m.target === '/data');
      assert.ok(data, 'a volume is mounted on /data');
      assert.match(data.source, /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, 'a named volume, not a host path');
      const named = compose.volumes as Record<string, Json> | undefined;
      assert.ok(named && data.source in named, `volume '${data.source}' is declared at the top level`);
    });

    it('is health-checked with redis-cli ping', () => {
      const test = healthcheckTest(redis);
      assert.deepEqual(test.slice(0, 1), ['CMD']);
      assert.match(test.slice(1).join(' '), /^redis-cli( .*)? ping$/);
    });
  });

  describe('tollgate', () => {
    const tollgate = service('tollgate');

    it('builds this repository as tollgate:local and publishes 8080', () => {
      const build = tollgate.build;
      const context = typeof build === 'string' ? build : (build as Record<string, Json>).context;
      assert.equal(context, '.');
      assert.equal(tollgate.image, 'tollgate:local');
      assert.ok(Array.isArray(tollgate.ports) && tollgate.ports.map(text).includes('8080:8080'));
      assert.equal(tollgate.restart, 'unless-stopped');
    });

    it('mounts ./config read-only at /app/config', () => {
      const config = mountsOf(tollgate).find((m) => m.target === '/app/config');
      assert.ok(config, 'a volume is mounted on /app/config');
      assert.equal(config.source, './config');
      assert.equal(config.readOnly, true);
    });

    it('starts only after redis is healthy', () => {
      const dependsOn = tollgate.depends_on as Record<string, Record<string, Json>>;
      assert.equal(dependsOn.redis?.condition, 'service_healthy');
    });

    it('reads .env and pins the settings a container needs over it', () => {
      const envFile = tollgate.env_file;
      const files = (Array.isArray(envFile) ? envFile : [envFile]).map((f) =>
        f !== null && typeof f === 'object' && !Array.isArray(f) ? f.path : f,
      );
      assert.ok(files.includes('.env'), JSON.stringify(envFile));
      // `environment` outranks `env_file`: these must not come from a .env meant for the host.
      const env = environmentOf(tollgate);
      assert.equal(env.REDIS_URL, 'redis://redis:6379');
      assert.equal(env.TOLLGATE_CONFIG, '/app/config/tollgate.yaml');
      assert.equal(env.TOLLGATE_HOST, '0.0.0.0');
      assert.equal(env.TOLLGATE_PORT, '8080');
    });

    it('has the same healthcheck as the Dockerfile, without curl', () => {
      const test = healthcheckTest(tollgate);
      assert.equal(test[0], 'CMD');
      const runtime = parseDockerfile(readRepoFile('Dockerfile')).at(-1);
      const healthcheck = runtime?.instructions.find((i) => i.keyword === 'HEALTHCHECK');
      assert.ok(healthcheck, 'the Dockerfile has a HEALTHCHECK');
      assert.deepEqual(test.slice(1), healthcheckCommand(healthcheck.args));
      assert.doesNotMatch(test.join(' '), /\b(curl|wget)\b/);
      assert.match(test.join(' '), /\/healthz\b/);
    });

    it('runs the image CMD (no command override that would hide the exec form)', () => {
      assert.equal(tollgate.command, undefined);
      assert.equal(tollgate.entrypoint, undefined);
      const runtime = parseDockerfile(readRepoFile('Dockerfile')).at(-1);
      const cmd = runtime?.instructions.findLast((i) => i.keyword === 'CMD');
      assert.ok(cmd && execForm(cmd.args));
    });
  });
});

describe('.env.example', () => {
  const text = readRepoFile('.env.example');
  const lines = text.split('\n');

  for (const name of [
    'OPENAI_API_KEY',
    'OPENAI_BASE_URL',
    'ANTHROPIC_API_KEY',
    'TOLLGATE_HOST',
    'TOLLGATE_PORT',
    'TOLLGATE_LOG_LEVEL',
    'TOLLGATE_CONFIG',
    'REDIS_URL',
  ]) {
    it(`names ${name}, with a comment above it`, () => {
      const at = lines.findIndex((l) => new RegExp(`^(# )?${name}=`).test(l));
      assert.ok(at > 0, `${name} is listed`);
      assert.match(lines[at - 1] ?? '', /^#/, `${name} has a comment`);
    });
  }

  it('holds no provider key values', () => {
    for (const l of lines.filter((x) => /^[A-Z_]*API_KEY=/.test(x))) assert.match(l, /=$/, l);
  });
});
