import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChunkPipe } from '../../../src/pipeline/chunk-pipe.js';
import type { Chunk } from '../../../src/pipeline/types.js';

/** A source of chunks that records its own cleanup, failing after `failAfter` chunks if given. */
function source(n: number, log: string[], failAfter?: number): AsyncIterable<Chunk> {
  return (async function* () {
    try {
      for (let i = 0; i < n; i++) {
        if (i === failAfter) throw new Error('upstream broke');
        yield { data: `c${i}` };
      }
    } finally {
      log.push('source closed');
    }
  })();
}

function recorder(name: string, log: string[]) {
  return {
    start: () => log.push(`${name} start`),
    chunk: (c: Chunk) => log.push(`${name} ${c.data}`),
    end: (completed: boolean, error: unknown) =>
      log.push(`${name} end ${completed ? 'completed' : error ? (error as Error).message : 'stopped'}`),
  };
}

describe('ChunkPipe', () => {
  it('is one pipe however many stages tap it; taps run in order, after the chunk is handed on', async () => {
    const log: string[] = [];
    const pipe = ChunkPipe.of(source(2, log)).tap(recorder('inner', log));
    assert.equal(ChunkPipe.of(pipe), pipe);
    ChunkPipe.of(pipe).tap(recorder('outer', log));
    for await (const c of pipe) log.push(`client ${c.data}`);
    assert.deepEqual(log, [
      'inner start',
      'outer start',
      'client c0',
      'inner c0',
      'outer c0',
      'client c1',
      'inner c1',
      'outer c1',
      'source closed',
      'inner end completed',
      'outer end completed',
    ]);
  });

  it('ends the taps with the error when the source fails, after the source cleaned up', async () => {
    const log: string[] = [];
    const pipe = ChunkPipe.of(source(3, log, 1)).tap(recorder('t', log));
    await assert.rejects(async () => {
      for await (const c of pipe) log.push(`client ${c.data}`);
    }, /upstream broke/);
    assert.deepEqual(log, ['t start', 'client c0', 't c0', 'source closed', 't end upstream broke']);
  });

  it('closes the source and ends the taps, not completed, when the consumer stops early', async () => {
    const log: string[] = [];
    const pipe = ChunkPipe.of(source(5, log)).tap(recorder('t', log));
    for await (const c of pipe) {
      log.push(`client ${c.data}`);
      break;
    }
    assert.deepEqual(log, ['t start', 'client c0', 't c0', 'source closed', 't end stopped']);
    assert.deepEqual(await pipe.next(), { done: true, value: undefined });
  });

  it('hands out a peeked first chunk first, untouched, and rejects a peek as the source does', async () => {
    const log: string[] = [];
    const pipe = ChunkPipe.of(source(2, log));
    assert.deepEqual((await pipe.peek()).value, { data: 'c0' });
    const seen: string[] = [];
    for await (const c of pipe) seen.push(c.data);
    assert.deepEqual(seen, ['c0', 'c1']);
    await assert.rejects(ChunkPipe.of(source(2, [], 0)).peek(), /upstream broke/);
  });
});
