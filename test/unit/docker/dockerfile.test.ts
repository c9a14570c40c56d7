// The Dockerfile checked as text (the test machines have no Docker engine): a multi-stage build
// whose final stage holds production dependencies only, runs unprivileged, is health-checked
// without curl and lets SIGTERM reach node directly.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  envOf,
  execForm,
  healthcheckCommand,
  parseDockerfile,
  parseInstructions,
  readRepoFile,
} from './dockerfile.js';
import type { Stage } from './dockerfile.js';

const stages = parseDockerfile(readRepoFile('Dockerfile'));
const runtime = stages.at(-1) as Stage;

function args(stage: Stage, keyword: string): string[] {
  return stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);
}

describe('Dockerfile', () => {
  it('has a build stage and a runtime stage on the same Node 24 base', () => {
    assert.ok(stages.length >= 2, `${stages.length} FROM stage(s)`);
    for (const s of stages) assert.match(s.image, /^node:24-/, s.image);
    assert.equal(new Set(stages.map((s) => s.image)).size, 1, 'every stage uses the same base');
  });

  it('builds with npm ci and npm run build', () => {
    const build = stages.find((s) => args(s, 'RUN').some((r) => r.includes('npm run build')));
    assert.ok(build && build !== runtime, 'npm run build runs in an earlier stage');
    assert.ok(args(build, 'RUN').some((r) => /\bnpm ci\b/.test(r)));
  });

  it('installs production dependencies only in the final stage', () => {
    const installs = args(runtime, 'RUN').filter((r) => /\bnpm ci\b/.test(r));
    assert.equal(installs.length, 1, JSON.stringify(installs));
    assert.match(installs[0]!, /--omit=dev\b/);
    assert.match(installs[0]!, /--ignore-scripts\b/);
    assert.equal(envOf(runtime).get('NODE_ENV'), 'production');
  });

  it('copies dist/ from the build stage, and config/', () => {
    const copies = args(runtime, 'COPY');
    const buildName = stages[0]?.name;
    assert.ok(buildName, 'the build stage is named');
    assert.ok(
      copies.some((c) => c.startsWith(`--from=${buildName} `) && /\/dist\b/.test(c)),
      JSON.stringify(copies),
    );
    assert.ok(
      copies.some((c) => /^config\s/.test(c)),
      JSON.stringify(copies),
    );
  });

  it('runs as a user other than root', () => {
    const user = args(runtime, 'USER').at(-1);
    assert.ok(user, 'the final stage sets USER');
    const name = user.split(':')[0];
    assert.notEqual(name, 'root');
    assert.notEqual(name, '0');
  });

  it('listens on 0.0.0.0:8080', () => {
    const env = envOf(runtime);
    assert.equal(env.get('TOLLGATE_HOST'), '0.0.0.0');
    assert.equal(env.get('TOLLGATE_PORT'), '8080');
    assert.ok(args(runtime, 'EXPOSE').some((e) => e.split(/\s+/).includes('8080')));
  });

  it('has a HEALTHCHECK on /healthz that needs no curl', () => {
    const healthchecks = args(runtime, 'HEALTHCHECK');
    assert.equal(healthchecks.length, 1);
    const command = healthcheckCommand(healthchecks[0]!);
    assert.ok(command, `exec-form HEALTHCHECK CMD: ${healthchecks[0]}`);
    assert.equal(command[0], 'node');
    assert.match(command.join(' '), /fetch\(.*\/healthz/);
    assert.match(command.join(' '), /process\.exit\(1\)/, 'exits 1 when the probe fails');
    assert.doesNotMatch(command.join(' '), /\b(curl|wget)\b/);
  });

  it('stops with SIGTERM delivered to node itself (exec-form CMD)', () => {
    assert.deepEqual(args(runtime, 'STOPSIGNAL'), ['SIGTERM']);
    const cmd = args(runtime, 'CMD').at(-1);
    assert.ok(cmd, 'the final stage has a CMD');
    assert.deepEqual(execForm(cmd), ['node', 'dist/cli.js', 'serve']);
    assert.deepEqual(args(runtime, 'ENTRYPOINT'), [], 'no ENTRYPOINT wrapping the command in a shell');
  });
});

describe('Dockerfile reader', () => {
  it('joins continuations, skips comments and substitutes global ARGs in FROM', () => {
    const parsed = parseDockerfile(
      [
        'ARG BASE=node:24-bookworm-slim',
        'FROM ${BASE} AS build',
        'RUN a \\',
        '  # a comment inside the continuation',
        '  && b',
        'FROM $BASE',
        'HEALTHCHECK --interval=5s \\',
        '  CMD ["node", "-e", "1"]',
      ].join('\n'),
    );
    assert.deepEqual(
      parsed.map((s) => [s.image, s.name]),
      [
        ['node:24-bookworm-slim', 'build'],
        ['node:24-bookworm-slim', undefined],
      ],
    );
    assert.deepEqual(parsed[0]?.instructions, [{ keyword: 'RUN', args: 'a && b' }]);
    assert.deepEqual(healthcheckCommand(parsed[1]!.instructions[0]!.args), ['node', '-e', '1']);
    assert.equal(execForm('node dist/cli.js'), undefined);
    assert.throws(() => parseInstructions('RUN a \\'));
  });
});

describe('.dockerignore', () => {
  const patterns = readRepoFile('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

  it('keeps dependencies, build output, VCS data and secrets out of the build context', () => {
    for (const p of ['node_modules', 'dist', '.git', '.env', 'test']) assert.ok(patterns.includes(p), p);
  });

  it('keeps what the build needs', () => {
    for (const needed of ['src', 'config', 'package.json', 'package-lock.json', 'tsconfig.json']) {
      assert.ok(!patterns.includes(needed) && !patterns.includes(`${needed}/`), needed);
    }
  });
});
