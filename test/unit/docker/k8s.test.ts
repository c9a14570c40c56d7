// The Kubernetes example under docker/k8s/, checked without a cluster: the manifests parse, point
// at each other correctly (Service and PDB selectors, HPA target, Secret and ConfigMap names),
// the ConfigMap's tollgate.yaml loads with the gateway's own loader given the Secret's variables,
// the probes ask routes the gateway really has on the port it really listens on, and the pod
// outlives the gateway's drain. Kubernetes' own schema is not checked here (structure only).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { ConfigError, parseConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/schema.js';
import { createTeamRegistry } from '../../../src/teams/registry.js';
import { parseDockerfile, readRepoFile, REPO_ROOT } from './dockerfile.js';
import { probeGateway } from './gateway-probe.js';
import { find, kustomization, loadObjects, manifestFiles, resolvePort, selects } from './k8s.js';

const objects = loadObjects();
const deployment = find(objects, 'Deployment', 'tollgate');
const pod = deployment.spec.template.spec;
const container = pod.containers.find((c: any) => c.name === 'tollgate');
const service = find(objects, 'Service', 'tollgate');
const secret = find(objects, 'Secret', 'tollgate-secrets');
const configMap = find(objects, 'ConfigMap', 'tollgate-config');
const secretData = secret.stringData as Record<string, string>;

/** The container's plain `env` entries (name/value). */
const podEnv: Record<string, string> = Object.fromEntries(
  (container.env ?? []).map((e: any) => {
    assert.equal(typeof e.value, 'string', `env ${e.name} is a plain value`);
    return [e.name, e.value];
  }),
);

/** Where TOLLGATE_CONFIG points: the volume mounted there, and the file in it. */
function configSource(): { volume: any; key: string } {
  const path = podEnv.TOLLGATE_CONFIG ?? '';
  const mount = container.volumeMounts.find((m: any) => path.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `TOLLGATE_CONFIG (${path}) is under a mounted volume`);
  const volume = pod.volumes.find((v: any) => v.name === mount.name);
  return { volume, key: path.slice(mount.mountPath.length + 1) };
}

/** The pod's environment as the gateway sees it: env, plus the Secret (a stand-in for each empty placeholder). */
function gatewayEnv(): Record<string, string> {
  const fromSecret = Object.fromEntries(
    Object.entries(secretData).map(([k, v]) => [k, v === '' ? `placeholder-${k.toLowerCase()}` : v]),
  );
  return { ...fromSecret, ...podEnv };
}

const configText = (): string => configMap.data[configSource().key] as string;
const loadGatewayConfig = (env = gatewayEnv()): Config => parseConfig(configText(), 'configmap', env);

/** `${NAME}` references in the config's values (comments excluded), and whether each has a default. */
function configReferences(): Map<string, boolean> {
  const refs = new Map<string, boolean>();
  const walk = (v: unknown): void => {
    if (typeof v === 'string') {
      for (const m of v.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g))
        refs.set(m[1]!, (refs.get(m[1]!) ?? false) || m[2] !== undefined);
    } else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(parse(configText()));
  return refs;
}

/** Environment variables the gateway's sources read (`env.NAME`, `process.env.NAME`). */
function variablesTheGatewayReads(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: URL): void => {
    for (const name of readdirSync(dir)) {
      const url = new URL(name, dir);
      if (statSync(url).isDirectory()) walk(new URL(`${name}/`, dir));
      else if (name.endsWith('.ts'))
        for (const m of readFileSync(url, 'utf8').matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g)) names.add(m[1]!);
    }
  };
  walk(new URL('src/', REPO_ROOT));
  return names;
}

const allPodTemplates = (): [string, any][] =>
  objects.filter((o) => o.kind === 'Deployment').map((d) => [d.metadata.name, d.spec.template.spec]);

describe('docker/k8s manifests', () => {
  it('kustomization.yaml applies every manifest in the folder, once, into one namespace', () => {
    const files = manifestFiles().filter((f) => f !== 'kustomization.yaml');
    assert.deepEqual([...kustomization.resources].sort(), files);
    const ns = kustomization.namespace;
    assert.ok(ns, 'kustomization.yaml sets a namespace');
    find(objects, 'Namespace', ns);
    for (const o of objects.filter((x) => x.kind !== 'Namespace')) {
      assert.equal(o.metadata.namespace, ns, `${o.kind}/${o.metadata.name}`);
    }
    const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    assert.equal(new Set(ids).size, ids.length, `no object twice: ${ids.join(', ')}`);
  });

  it('every object has apiVersion, kind and a name', () => {
    for (const o of objects) {
      assert.match(o.apiVersion, /^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/, JSON.stringify(o.metadata));
      assert.match(o.kind, /^[A-Z][A-Za-z]+$/);
      assert.match(o.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
  });

  describe('the ConfigMap and the Secret', () => {
    it("tollgate.yaml loads with the gateway's loader, given the Deployment's env and the Secret", () => {
      const { volume, key } = configSource();
      assert.equal(volume.configMap?.name, configMap.metadata.name, 'TOLLGATE_CONFIG is in the ConfigMap');
      assert.ok(key in configMap.data, `the ConfigMap has ${key}`);
      const config = loadGatewayConfig();
      assert.equal(config.store.type, 'redis', 'replicas share one store');
      assert.equal(config.store.redis?.url, secretData.REDIS_URL);
      assert.ok(Object.keys(config.providers).length > 0, 'a provider');
    });

    it('defines teams, without which the gateway refuses to listen on 0.0.0.0', () => {
      const config = loadGatewayConfig();
      assert.equal(config.server.host, '0.0.0.0');
      assert.equal(createTeamRegistry(config).anonymous, false);
    });

    it("every variable tollgate.yaml needs comes from the pod's env or the Secret", () => {
      const provided = new Set([...Object.keys(podEnv), ...Object.keys(secretData)]);
      const required = [...configReferences()].filter(([, hasDefault]) => !hasDefault).map(([n]) => n);
      assert.ok(required.includes('REDIS_URL') && required.includes('OPENAI_API_KEY'), required.join());
      for (const name of required) assert.ok(provided.has(name), name);
    });

    it('each Secret key is a variable tollgate.yaml references or the gateway reads', () => {
      const known = new Set([...configReferences().keys(), ...variablesTheGatewayReads()]);
      assert.ok(
        known.has('TOLLGATE_ADMIN_KEY') && !known.has('OPENAI_KEY'),
        'the scan finds what load.ts reads',
      );
      for (const name of Object.keys(secretData)) assert.ok(known.has(name), `${name} is read by nobody`);
    });

    it('a Secret value left empty stops the pod at start instead of running without it', () => {
      for (const name of ['OPENAI_API_KEY', 'REDIS_URL']) {
        const env = { ...gatewayEnv(), [name]: '' };
        assert.throws(
          () => loadGatewayConfig(env),
          (e: unknown) => e instanceof ConfigError && e.message.includes(name),
        );
      }
    });

    it('holds placeholders, never keys', () => {
      for (const [name, value] of Object.entries(secretData)) {
        if (/_KEY$/.test(name)) assert.equal(value, '', `${name} is an empty placeholder`);
      }
      assert.doesNotMatch(secretData.REDIS_URL ?? '', /@/, 'no credentials in REDIS_URL');
      assert.equal(secret.data, undefined, 'nothing base64-encoded hides in data:');
    });

    it('the Deployment takes its environment from this Secret', () => {
      const refs = (container.envFrom ?? []).map((e: any) => e.secretRef?.name);
      assert.deepEqual(refs, [secret.metadata.name]);
    });
  });

  describe('the gateway Deployment', () => {
    it('listens where the Service and every probe knock: the port the config and env set', () => {
      const port = loadGatewayConfig().server.port;
      assert.equal(resolvePort(container, 'http'), port);
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        const get = container[probe]?.httpGet;
        assert.ok(get, `${probe} is an httpGet`);
        assert.equal(resolvePort(container, get.port), port, probe);
      }
      assert.deepEqual(
        service.spec.ports.map((p: any) => resolvePort(container, p.targetPort)),
        [port],
      );
    });

    it('is ready on /readyz and alive on /healthz, routes that split when draining starts', async () => {
      const ready = container.readinessProbe.httpGet.path;
      const alive = container.livenessProbe.httpGet.path;
      assert.equal(ready, '/readyz');
      assert.equal(alive, '/healthz');
      const paths = [ready, alive, container.startupProbe.httpGet.path];
      const answers = await probeGateway(paths, loadGatewayConfig());
      for (const path of paths) assert.equal(answers.serving[path], 200, path);
      // Draining: out of the Service's endpoints, but not restarted by the kubelet.
      assert.equal(answers.draining[ready], 503);
      assert.equal(answers.draining[alive], 200);
    });

    it('outlives the drain: grace period > preStop sleep + server.shutdownTimeoutMs', () => {
      const sleep = container.lifecycle?.preStop?.exec?.command as string[] | undefined;
      assert.ok(sleep && sleep[0] === 'sleep' && /^\d+$/.test(sleep[1] ?? ''), JSON.stringify(sleep));
      const drainMs = loadGatewayConfig().server.shutdownTimeoutMs;
      assert.ok(
        pod.terminationGracePeriodSeconds * 1000 > Number(sleep[1]) * 1000 + drainMs,
        `${pod.terminationGracePeriodSeconds} s > ${sleep[1]} s + ${drainMs} ms`,
      );
    });

    it('the Service and the PDB select its pods, and the Deployment owns them', () => {
      const labels = deployment.spec.template.metadata.labels;
      assert.ok(selects(deployment.spec.selector.matchLabels, labels), 'Deployment selector');
      assert.ok(selects(service.spec.selector, labels), 'Service selector');
      assert.ok(selects(find(objects, 'PodDisruptionBudget', 'tollgate').spec.selector.matchLabels, labels));
      const redisLabels = find(objects, 'Deployment', 'redis').spec.template.metadata.labels;
      assert.equal(selects(service.spec.selector, redisLabels), false, 'not the Redis pod');
    });

    it('the HPA scales this Deployment on CPU, which the pod requests (one core)', () => {
      const hpa = find(objects, 'HorizontalPodAutoscaler', 'tollgate');
      assert.equal(hpa.apiVersion, 'autoscaling/v2');
      assert.deepEqual(hpa.spec.scaleTargetRef, {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        name: 'tollgate',
      });
      assert.ok(hpa.spec.minReplicas >= 2 && hpa.spec.minReplicas <= hpa.spec.maxReplicas);
      const cpu = hpa.spec.metrics.find((m: any) => m.type === 'Resource' && m.resource?.name === 'cpu');
      assert.equal(cpu?.resource.target.type, 'Utilization');
      // Utilization is a share of the request: without one the HPA cannot compute it.
      assert.equal(container.resources?.requests?.cpu, '1');
      assert.equal(deployment.spec.replicas, undefined, 'replicas left to the HPA');
      // One process per pod: CPU per pod then tracks one event loop, which is what the HPA reads.
      assert.equal(loadGatewayConfig().server.workers, undefined, 'no cluster workers in a pod');
    });

    it("runs as the image's non-root user, uid 1000 (the Dockerfile's USER node)", () => {
      const user = parseDockerfile(readRepoFile('Dockerfile'))
        .at(-1)
        ?.instructions.findLast((i) => i.keyword === 'USER')?.args;
      assert.equal(user, 'node');
      assert.equal(pod.securityContext.runAsUser, 1000);
      assert.equal(
        loadGatewayConfig().accounting.ledgerPath,
        undefined,
        'writes no file on the read-only root',
      );
    });
  });

  it("every pod meets Pod Security 'restricted', as the namespace enforces", () => {
    const ns = find(objects, 'Namespace', kustomization.namespace!);
    assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
    for (const [name, spec] of allPodTemplates()) {
      assert.equal(spec.securityContext?.runAsNonRoot, true, name);
      assert.ok(
        Number.isInteger(spec.securityContext?.runAsUser) && spec.securityContext.runAsUser > 0,
        name,
      );
      assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault', name);
      for (const c of spec.containers) {
        assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${name}/${c.name}`);
        assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${name}/${c.name}`);
        assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${name}/${c.name}`);
        assert.ok(c.resources?.requests?.cpu && c.resources?.limits?.memory, `${name}/${c.name} resources`);
      }
    }
  });

  describe('the demo Redis', () => {
    const redis = find(objects, 'Deployment', 'redis');
    const redisService = find(objects, 'Service', 'redis');

    it("is where the Secret's REDIS_URL points", () => {
      const url = new URL(secretData.REDIS_URL ?? '');
      assert.equal(url.protocol, 'redis:');
      assert.equal(url.hostname, redisService.metadata.name);
      const port = redisService.spec.ports.find((p: any) => p.port === Number(url.port || 6379));
      assert.ok(port, `the Service serves port ${url.port}`);
      assert.ok(selects(redisService.spec.selector, redis.spec.template.metadata.labels));
      assert.equal(resolvePort(redis.spec.template.spec.containers[0], port.targetPort), 6379);
    });

    it('is one pod at a time, keeping an append-only file, never evicting keys', () => {
      assert.equal(redis.spec.replicas, 1);
      assert.equal(redis.spec.strategy?.type, 'Recreate', 'no second Redis during a rollout');
      const args = (redis.spec.template.spec.containers[0].args as string[]).join(' ');
      assert.match(args, /--appendonly yes\b/);
      assert.match(args, /--maxmemory-policy noeviction\b/);
    });
  });

  it('selects(): an empty selector matches nothing, a partial one does not match', () => {
    assert.equal(selects({}, { a: '1' }), false);
    assert.equal(selects({ a: '1', b: '2' }, { a: '1' }), false);
    assert.equal(selects({ a: '1' }, { a: '1', b: '2' }), true);
    assert.throws(() => resolvePort({ name: 'c', ports: [] }, 'http'));
  });
});
