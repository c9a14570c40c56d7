// docker-compose.yml's `scale` profile, checked without a Docker engine: N replicas of the
// gateway image sharing the one Redis, behind HAProxy (docker/haproxy.cfg), which must find the
// replicas through Docker's DNS, take a draining one out on /readyz, pass SSE through at once and
// outwait the gateway's longest request. The default services must not change.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_ROUTING, DEFAULT_SERVER, DEFAULT_TIMEOUTS } from '../../../src/config/defaults.js';
import {
  durationMs,
  environmentOf,
  healthcheckTest,
  loadCompose,
  mountsOf,
  portsOf,
  serviceOf,
  text,
  type Json,
} from './compose.js';
import { healthcheckCommand, parseDockerfile, readRepoFile } from './dockerfile.js';
import { probeGateway } from './gateway-probe.js';
import { directives, effective, haproxyTimeMs, parseHaproxyConfig, section } from './haproxy-cfg.js';

const compose = loadCompose();
const tollgate = serviceOf(compose, 'tollgate');
const gateway = serviceOf(compose, 'gateway');
const lb = serviceOf(compose, 'lb');
const HAPROXY_CFG = '/usr/local/etc/haproxy/haproxy.cfg';

const profilesOf = (name: string): string[] => {
  const p = compose.services[name]?.profiles;
  return Array.isArray(p) ? p.map(text) : [];
};

describe('docker-compose.yml, profile scale', () => {
  it('leaves `docker compose up` as it was: tollgate and redis alone have no profile', () => {
    const always = Object.keys(compose.services).filter((n) => profilesOf(n).length === 0);
    assert.deepEqual(always.sort(), ['redis', 'tollgate']);
    for (const name of Object.keys(compose.services).filter((n) => !always.includes(n))) {
      assert.deepEqual(profilesOf(name), ['scale'], name);
    }
  });

  describe('gateway (the replicas)', () => {
    it('runs TOLLGATE_REPLICAS replicas, 3 by default', () => {
      const replicas = (svc: Json | undefined) => (svc as { deploy?: { replicas?: Json } }).deploy?.replicas;
      assert.equal(replicas(gateway), 3);
      assert.equal(replicas(loadCompose({ TOLLGATE_REPLICAS: '5' }).services.gateway), 5);
    });

    it('is the tollgate image, built from this repository', () => {
      assert.equal(gateway.image, tollgate.image);
      const context = (b: Json | undefined) =>
        typeof b === 'string' ? b : (b as { context?: Json })?.context;
      assert.equal(context(gateway.build), '.');
    });

    it('publishes no port and names no container, which would collide between replicas', () => {
      assert.equal(gateway.ports, undefined);
      assert.equal(gateway.container_name, undefined);
    });

    it('runs like the single tollgate: same .env, pinned settings, config mount and Redis', () => {
      assert.deepEqual(gateway.env_file, tollgate.env_file);
      // The same, but for the shutdown delay a load-balanced replica needs (the test below).
      const { TOLLGATE_SHUTDOWN_DELAY_MS: _delay, ...env } = environmentOf(gateway);
      assert.deepEqual(env, environmentOf(tollgate));
      assert.equal(environmentOf(gateway).REDIS_URL, 'redis://redis:6379');
      assert.deepEqual(mountsOf(gateway), mountsOf(tollgate));
      assert.deepEqual(gateway.depends_on, { redis: { condition: 'service_healthy' } });
      assert.equal(gateway.restart, 'unless-stopped');
    });

    it("is healthy only when ready: the image's probe, on /readyz", () => {
      const test = healthcheckTest(gateway);
      const runtime = parseDockerfile(readRepoFile('Dockerfile')).at(-1);
      const hc = runtime?.instructions.find((i) => i.keyword === 'HEALTHCHECK');
      const imageProbe = healthcheckCommand(hc?.args ?? '');
      assert.ok(imageProbe, 'the Dockerfile has an exec-form HEALTHCHECK');
      assert.deepEqual(
        test,
        ['CMD', ...imageProbe.map((a) => a.replace('/healthz', '/readyz'))],
        'the same command, asking /readyz',
      );
    });

    it('probes routes the gateway has: /readyz turns 503 on draining, /healthz does not', async () => {
      const answers = await probeGateway(['/readyz', '/healthz']);
      assert.deepEqual(answers.serving, { '/readyz': 200, '/healthz': 200 });
      assert.deepEqual(answers.draining, { '/readyz': 503, '/healthz': 200 });
    });

    it('turns unready before it stops listening, and gets more time to stop than that and the drain', () => {
      const delayMs = Number((gateway.environment as Record<string, string>).TOLLGATE_SHUTDOWN_DELAY_MS);
      // lb takes a replica out after `fall` failed checks `inter` apart: the delay must cover that.
      assert.ok(delayMs >= 4_000, `shutdown delay ${delayMs} ms`);
      assert.ok(durationMs(gateway.stop_grace_period) > delayMs + DEFAULT_SERVER.shutdownTimeoutMs);
    });
  });

  describe('lb', () => {
    it('is the official HAProxy image with docker/haproxy.cfg mounted read-only where it reads it', () => {
      assert.match(text(lb.image), /^haproxy:\d+\.\d+(-alpine)?$/);
      const cfg = mountsOf(lb).find((m) => m.target === HAPROXY_CFG);
      assert.ok(cfg, `a file is mounted on ${HAPROXY_CFG}`);
      assert.deepEqual(cfg, { source: './docker/haproxy.cfg', target: HAPROXY_CFG, readOnly: true });
    });

    it('publishes TOLLGATE_LB_PORT (8090 by default) on the port HAProxy binds', () => {
      const bind = directives(
        section(parseHaproxyConfig(readRepoFile('docker/haproxy.cfg')), 'frontend'),
        'bind',
      );
      assert.equal(bind.length, 1);
      const bound = Number(bind[0]![1]!.split(':').at(-1));
      assert.deepEqual(portsOf(lb), [{ host: '8090', container: bound }]);
      assert.deepEqual(portsOf(loadCompose({ TOLLGATE_LB_PORT: '9000' }).services.lb!), [
        { host: '9000', container: bound },
      ]);
    });

    it('starts once the replicas are healthy', () => {
      assert.deepEqual(lb.depends_on, { gateway: { condition: 'service_healthy' } });
    });
  });
});

describe('docker/haproxy.cfg', () => {
  const cfg = parseHaproxyConfig(readRepoFile('docker/haproxy.cfg'));
  const frontend = section(cfg, 'frontend');
  const backend = section(cfg, 'backend');

  it('sends the frontend to the backend', () => {
    assert.deepEqual(directives(frontend, 'default_backend'), [['default_backend', backend.name!]]);
  });

  it("finds the replicas through Docker's DNS, by the compose service name and its port", () => {
    const templates = directives(backend, 'server-template');
    assert.equal(templates.length, 1);
    const [, , slots, target, ...options] = templates[0]!;
    const replicas = (gateway.deploy as { replicas?: Json } | undefined)?.replicas;
    assert.ok(Number(slots) >= Number(replicas), `${slots} slots for the ${text(replicas)} default replicas`);
    const [host, port] = target!.split(':');
    assert.equal(host, 'gateway', 'the compose service of the replicas');
    assert.equal(port, environmentOf(gateway).TOLLGATE_PORT);
    // init-addr none: start with no replica resolved yet instead of refusing to start.
    for (const o of ['check', 'resolvers', 'init-addr']) assert.ok(options.includes(o), o);
    assert.equal(options[options.indexOf('init-addr') + 1], 'none');
    const resolvers = section(cfg, 'resolvers', options[options.indexOf('resolvers') + 1]);
    assert.deepEqual(
      directives(resolvers, 'nameserver').map((l) => l[2]),
      ['127.0.0.11:53'],
    );
  });

  it('health-checks each replica on /readyz and wants a 200', () => {
    assert.equal(directives(backend, 'option', 'httpchk').length, 1);
    const send = directives(backend, 'http-check', 'send');
    assert.equal(send.length, 1);
    const words = send[0]!;
    assert.equal(words[words.indexOf('meth') + 1], 'GET');
    assert.equal(words[words.indexOf('uri') + 1], '/readyz');
    assert.deepEqual(directives(backend, 'http-check', 'expect'), [
      ['http-check', 'expect', 'status', '200'],
    ]);
  });

  it('spreads by requests in flight (streams last minutes, JSON calls seconds)', () => {
    assert.deepEqual(effective(cfg, backend, 'balance'), [['balance', 'leastconn']]);
  });

  it('passes SSE through as it arrives: http-no-delay, no request buffering, no compression', () => {
    for (const proxy of [frontend, backend]) {
      assert.equal(effective(cfg, proxy, 'option', 'http-no-delay').length, 1, proxy.kind);
      assert.equal(effective(cfg, proxy, 'option', 'http-buffer-request').length, 0, proxy.kind);
      assert.equal(effective(cfg, proxy, 'compression').length, 0, proxy.kind);
      assert.equal(effective(cfg, proxy, 'filter', 'compression').length, 0, proxy.kind);
    }
  });

  it("waits longer than the gateway's longest request before cutting a silent connection", () => {
    const longest = Math.max(DEFAULT_ROUTING.deadlineMs, DEFAULT_TIMEOUTS.totalMs);
    for (const [proxy, side] of [
      [frontend, 'client'],
      [backend, 'server'],
    ] as const) {
      const t = effective(cfg, proxy, 'timeout', side);
      assert.equal(t.length, 1, `timeout ${side}`);
      assert.ok(haproxyTimeMs(t[0]![2]!) > longest, `timeout ${side} ${t[0]![2]} > ${longest} ms`);
    }
  });

  it('retries only failed connections, never an answer (a 5xx may come after the upstream was paid)', () => {
    for (const l of effective(cfg, backend, 'retry-on'))
      assert.deepEqual(l.slice(1), ['conn-failure'], l.join(' '));
    assert.equal(effective(cfg, backend, 'option', 'redispatch').length, 1);
  });

  it('reader: sections, defaults, times', () => {
    const parsed = parseHaproxyConfig(
      'defaults\n  timeout server 2m # two minutes\nbackend b\n  balance roundrobin\nbackend c\n',
    );
    assert.deepEqual(
      parsed.map((s) => [s.kind, s.name, s.lines.length]),
      [
        ['defaults', undefined, 1],
        ['backend', 'b', 1],
        ['backend', 'c', 0],
      ],
    );
    assert.deepEqual(effective(parsed, section(parsed, 'backend', 'c'), 'timeout', 'server'), [
      ['timeout', 'server', '2m'],
    ]);
    assert.deepEqual(effective(parsed, section(parsed, 'backend', 'b'), 'balance'), [
      ['balance', 'roundrobin'],
    ]);
    assert.equal(haproxyTimeMs('2m'), 120_000);
    assert.equal(haproxyTimeMs('500'), 500);
    assert.throws(() => haproxyTimeMs('10x'));
    assert.throws(() => parseHaproxyConfig('  balance leastconn\n'));
    assert.throws(() => section(parsed, 'backend'), /expected one/);
  });
});
