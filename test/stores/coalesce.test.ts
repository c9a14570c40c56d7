// The Redis client writes once per turn of the event loop: commands issued in one turn leave in
// one socket write (connect.ts, coalesceWrites), and their replies are unchanged.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { atEndOfTurn } from '../../src/end-of-turn.js';
import { createRedisClient } from '../../src/stores/connect.js';
import { randomKeyPrefix, redisUrl, waitUntilReady } from './store.contract.js';

/** Counts the writes the socket's stream machinery hands to the OS layer. */
function countWrites(socket: Socket): () => number {
  let n = 0;
  const s = socket as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
  const write = s._write.bind(socket);
  const writev = s._writev.bind(socket);
  s._write = (...a) => {
    n++;
    write(...a);
  };
  s._writev = (...a) => {
    n++;
    writev(...a);
  };
  return () => n;
}

describe('Redis writes coalesced per event-loop turn', () => {
  it('sends 50 commands issued in one turn in one write, and each gets its own reply', async () => {
    const client = createRedisClient({
      url: redisUrl(),
      commandTimeoutMs: 2_000,
      connectTimeoutMs: 2_000,
    }) as Redis;
    await waitUntilReady(client);
    const prefix = randomKeyPrefix();
    try {
      const socket = (client as unknown as { stream: Socket }).stream;
      const writes = countWrites(socket);
      const sets = Array.from({ length: 50 }, (_, i) =>
        client.set(`${prefix}c${i}`, String(i), 'PX', 10_000),
      );
      assert.equal(socket.writableCorked, 1, 'held until the turn ends');
      await Promise.all(sets);
      assert.equal(writes(), 1);
      const values = await Promise.all(Array.from({ length: 50 }, (_, i) => client.get(`${prefix}c${i}`)));
      assert.deepEqual(
        values,
        Array.from({ length: 50 }, (_, i) => String(i)),
      );
      assert.equal(writes(), 2);
      // Commands of different turns go out in their own writes.
      await client.get(`${prefix}c0`);
      await client.get(`${prefix}c1`);
      assert.equal(writes(), 4);
      assert.equal(socket.writableCorked, 0);
    } finally {
      client.disconnect();
    }
  });
});

describe('atEndOfTurn', () => {
  it('runs every batch of the turn when one throws, and reports the throw as a process warning', async () => {
    const ran: string[] = [];
    const warned = new Promise<Error>((resolve) => process.once('warning', resolve));
    atEndOfTurn(() => ran.push('a'));
    atEndOfTurn(() => {
      throw new Error('a bug in a batch');
    });
    atEndOfTurn(() => ran.push('c'));
    const warning = await warned;
    assert.deepEqual(ran, ['a', 'c']);
    assert.equal(warning.message, 'a bug in a batch');
    assert.equal(warning.name, 'Error');
    // The next turn works as usual.
    await new Promise<void>((resolve) => atEndOfTurn(resolve));
  });
});
