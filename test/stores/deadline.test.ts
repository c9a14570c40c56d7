// withDeadline, the rule behind every store call's timeout: a call fails after `ms` of silence
// from Redis, not after `ms` of waiting. Driven by a fake "last reply" clock, so the rule is
// tested without Redis's own timing.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { withDeadline } from '../../src/stores/resilient-store.js';
import { StoreUnavailableError } from '../../src/stores/store.js';

const after = <T>(ms: number, value: T): Promise<T> => sleep(ms).then(() => value);

describe('withDeadline', () => {
  it('waits past the deadline while replies keep arriving (a queue)', async () => {
    let lastReply = performance.now();
    const ticker = setInterval(() => (lastReply = performance.now()), 30);
    try {
      const t0 = performance.now();
      assert.equal(await withDeadline(after(350, 'answered'), 100, () => lastReply), 'answered');
      assert.ok(performance.now() - t0 >= 340);
    } finally {
      clearInterval(ticker);
    }
  });

  it('fails after the deadline when nothing has been heard for that long', async () => {
    const t0 = performance.now();
    const lastReply = t0 - 10_000;
    await assert.rejects(
      withDeadline(after(1_000, 'late'), 100, () => lastReply),
      StoreUnavailableError,
    );
    const took = performance.now() - t0;
    assert.ok(took >= 100 && took < 400, `failed after ${Math.round(took)} ms`);
  });

  it('fails once replies stop, even if some came at first', async () => {
    let lastReply = performance.now();
    const ticker = setInterval(() => (lastReply = performance.now()), 30);
    setTimeout(() => clearInterval(ticker), 150);
    const t0 = performance.now();
    await assert.rejects(
      withDeadline(after(2_000, 'late'), 100, () => lastReply),
      StoreUnavailableError,
    );
    const took = performance.now() - t0;
    // The last reply at 120-150 ms, then 100 ms of silence.
    assert.ok(took >= 200 && took < 600, `failed after ${Math.round(took)} ms`);
  });

  it('waits when the poll phase after its timer reads a reply to an earlier call', async () => {
    // A reply lands in the socket in the same turn as the deadline's timer: the timer sees 100 ms
    // of silence, the poll phase before the verdict reads the reply (Redis answers in order, this
    // call's turn is coming), and the verdict must then wait again. A gateway busy with a burst
    // spends long turns like this one.
    let lastReply = performance.now() - 10_000;
    const server = net.createServer((socket) => socket.on('data', () => (lastReply = performance.now())));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
    try {
      // Set before the call's own 100 ms timer, so it fires first in the same timers phase.
      setTimeout(() => client.write('+OK\r\n'), 100);
      assert.equal(await withDeadline(after(180, 'answered'), 100, () => lastReply), 'answered');
    } finally {
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('never waits past the backstop, however lively the connection', async () => {
    let lastReply = performance.now();
    const ticker = setInterval(() => (lastReply = performance.now()), 20);
    try {
      const t0 = performance.now();
      // 50 ms deadline: the backstop is max(1 s, 10x) = 1 s.
      await assert.rejects(
        withDeadline(after(3_000, 'late'), 50, () => lastReply),
        StoreUnavailableError,
      );
      const took = performance.now() - t0;
      assert.ok(took >= 950 && took < 1_500, `failed after ${Math.round(took)} ms`);
    } finally {
      clearInterval(ticker);
    }
  });
});
