// The Kubernetes manifests under docker/k8s/, read with the `yaml` package for the packaging
// tests (no cluster and no kubectl on the test machines): every document of every file that
// kustomization.yaml lists, and small helpers to find objects and resolve what they point at.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { parseAllDocuments, parse } from 'yaml';
import { REPO_ROOT, readRepoFile } from './dockerfile.js';

// Manifests are loosely typed JSON (`any`): the tests assert on the shapes they rely on.
export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: any;
};

export const K8S_DIR = 'docker/k8s';

export interface Kustomization {
  namespace?: string;
  resources: string[];
}

export const kustomization = parse(readRepoFile(`${K8S_DIR}/kustomization.yaml`)) as Kustomization;

/** Every YAML file in docker/k8s/ (kustomization.yaml included). */
export function manifestFiles(): string[] {
  return readdirSync(new URL(`${K8S_DIR}/`, REPO_ROOT))
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
}

/** The documents of one file; YAML errors and warnings fail. */
export function parseManifest(textIn: string, source: string): K8sObject[] {
  const docs = parseAllDocuments(textIn);
  const list = Array.isArray(docs) ? docs : [docs];
  const out: K8sObject[] = [];
  for (const doc of list) {
    assert.deepEqual(doc.errors.map(String), [], `${source}: YAML errors`);
    assert.deepEqual(doc.warnings.map(String), [], `${source}: YAML warnings`);
    const obj = doc.toJS() as K8sObject | null;
    if (obj !== null) out.push(obj);
  }
  return out;
}

/** Every object kustomization.yaml applies. */
export function loadObjects(): K8sObject[] {
  return kustomization.resources.flatMap((f) => parseManifest(readRepoFile(`${K8S_DIR}/${f}`), f));
}

export function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata?.name === name);
  assert.equal(found.length, 1, `one ${kind} named ${name}`);
  return found[0]!;
}

/** Labels a selector's matchLabels (or a Service's plain selector) matches. */
export function selects(
  selector: Record<string, string>,
  labels: Record<string, string> | undefined,
): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels?.[k] === v);
}

/** A container port given by number or by name, as the number the container listens on. */
export function resolvePort(container: any, port: number | string): number {
  if (typeof port === 'number') return port;
  const named = (container.ports ?? []).find((p: any) => p.name === port);
  assert.ok(named, `container ${container.name} has a port named ${port}`);
  return named.containerPort as number;
}
