// The primary passes the workers' log lines on whole: bytes from two workers never mix within a
// line, a line cut across chunks is joined, and a full sink pauses the workers' pipes.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogRelay, type LineSink } from '../../../src/cluster/log-relay.js';
import { restartDelayMs, RESTART_MAX_DELAY_MS } from '../../../src/cluster/primary.js';

class Sink extends EventEmitter implements LineSink {
  writes: string[] = [];
  full = false;
  write(data: string): boolean {
    this.writes.push(data);
    return !this.full;
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('log relay', () => {
  it('passes on whole lines only, joining a line cut across chunks', async () => {
    const sink = new Sink();
    const relay = createLogRelay(sink);
    const a = new PassThrough();
    const b = new PassThrough();
    relay.add(a);
    relay.add(b);
    // 1. Worker a writes half a line; worker b writes a whole one meanwhile.
    a.write('{"worker":1,"msg":"he');
    b.write('{"worker":2,"msg":"x"}\n');
    await tick();
    assert.deepEqual(sink.writes, ['{"worker":2,"msg":"x"}\n']);
    // 2. The rest of a's line, and the start of the next, arrive; then the stream ends mid-line.
    a.write('llo"}\n{"worker":1,"msg":"la');
    a.end('st"}');
    b.end();
    await relay.ended();
    assert.deepEqual(sink.writes.slice(1), ['{"worker":1,"msg":"hello"}\n', '{"worker":1,"msg":"last"}\n']);
  });

  it('never splits a multi-byte character cut between chunks', async () => {
    const sink = new Sink();
    const relay = createLogRelay(sink);
    const a = new PassThrough();
    relay.add(a);
    const line = Buffer.from('{"msg":"naïve ☃"}\n');
    a.write(line.subarray(0, 12)); // inside the two bytes of ï
    a.end(line.subarray(12));
    await relay.ended();
    assert.deepEqual(sink.writes, ['{"msg":"naïve ☃"}\n']);
  });

  it('pauses every pipe while the sink is full, and resumes them when it drains', async () => {
    const sink = new Sink();
    const relay = createLogRelay(sink);
    const a = new PassThrough();
    relay.add(a);
    sink.full = true;
    a.write('one\n');
    await tick();
    assert.equal(a.isPaused(), true);
    sink.full = false;
    sink.emit('drain');
    assert.equal(a.isPaused(), false);
    a.end('two\n');
    await relay.ended();
    assert.deepEqual(sink.writes, ['one\n', 'two\n']);
  });
});

describe('worker restart backoff', () => {
  it('doubles from 0.5 s with each crash in a row, up to its cap', () => {
    assert.deepEqual([1, 2, 3, 4].map(restartDelayMs), [500, 1000, 2000, 4000]);
    assert.equal(restartDelayMs(30), RESTART_MAX_DELAY_MS);
  });
});
