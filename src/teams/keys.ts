// Team keys: minted from 24 random bytes, stored only as their sha256 hex digest. The key id
// shown in logs and config is derived from the digest, so it identifies a key without
// revealing anything that helps to guess it.
import { hash, randomBytes } from 'node:crypto';

export const KEY_PREFIX = 'tg-';

export function hashKey(key: string): string {
  return hash('sha256', key, 'hex');
}

export function keyIdFromHash(sha256: string): string {
  return `k_${sha256.slice(0, 10)}`;
}

export interface MintedKey {
  key: string;
  sha256: string;
  id: string;
}

export function mintKey(): MintedKey {
  const key = KEY_PREFIX + randomBytes(24).toString('base64url');
  const sha256 = hashKey(key);
  return { key, sha256, id: keyIdFromHash(sha256) };
}
