// The store the gateway runs on, from config: MemoryStore for one process with no set-up, or
// Redis (standalone, Sentinel or Cluster) behind ResilientStore, which applies the configured
// policy while Redis is away and logs each change of state once.
import type { Logger } from 'pino';
import type { StoreConfig } from '../config/schema.js';
import { createRedisClient } from './connect.js';
import { createKeys, type Keys } from './keys.js';
import { MemoryStore } from './memory-store.js';
import { RedisStore } from './redis-store.js';
import { ResilientStore } from './resilient-store.js';
import type { Store } from './store.js';

export interface StoreHandle {
  store: Store;
  keys: Keys;
  /**
   * Resolves once the store can serve (at once for memory; Redis connected), or after
   * `timeoutMs` with false: the gateway then starts degraded, under the configured policy.
   */
  ready(timeoutMs: number): Promise<boolean>;
}

export function createStore(config: StoreConfig, log: Logger): StoreHandle {
  const memory = new MemoryStore({ cacheMaxBytes: config.memoryCacheMaxBytes });
  const r = config.redis;
  if (config.type === 'memory' || !r) return { store: memory, keys: createKeys(), ready: async () => true };
  const client = createRedisClient({
    ...(r.url !== undefined ? { url: r.url } : {}),
    ...(r.sentinel
      ? {
          sentinel: {
            name: r.sentinel.name,
            sentinels: r.sentinel.sentinels,
            ...(r.sentinel.password !== undefined ? { password: r.sentinel.password } : {}),
          },
        }
      : {}),
    ...(r.cluster ? { cluster: r.cluster } : {}),
    commandTimeoutMs: r.commandTimeoutMs,
    connectTimeoutMs: r.connectTimeoutMs,
  });
  const store = new ResilientStore(new RedisStore(client), {
    policy: r.onUnavailable,
    local: memory,
    timeoutMs: r.commandTimeoutMs,
  });
  store.onStateChange((state, cause) => {
    if (state === 'degraded') {
      log.warn(
        { err: cause, policy: r.onUnavailable },
        r.onUnavailable === 'open'
          ? 'Redis unavailable: serving with local per-process limits and no cache until it returns'
          : 'Redis unavailable: answering 503 until it returns',
      );
    } else log.info('Redis available again: shared limits and cache restored');
  });
  const ready = (timeoutMs: number): Promise<boolean> =>
    new Promise((resolve) => {
      if (client.status === 'ready') return resolve(true);
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = (): void => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      client.once('ready', onReady);
    });
  return { store, keys: createKeys(r.keyPrefix), ready };
}
