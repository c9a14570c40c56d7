// A store that counts the calls made to it by name, for tests that check which store calls a
// request makes (and when). It forwards everything to `inner`.
import { MemoryStore } from '../../src/stores/memory-store.js';
import type { Store } from '../../src/stores/store.js';

export function countingStore(inner: Store = new MemoryStore()): {
  store: Store;
  calls: Map<string, number>;
} {
  const calls = new Map<string, number>();
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store, calls };
}
