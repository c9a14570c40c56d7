import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, it } from 'node:test';
import { createAlerter, type Alert } from '../../../src/accounting/webhook.js';
import { createLogSink } from '../../helpers/log-sink.js';

const alert: Alert = {
  type: 'budget.threshold',
  team: 't',
  period: '2026-11',
  metric: 'usd',
  threshold_percent: 80,
  limit: 10,
  used: 8,
};

/** A webhook that answers the given statuses in turn, recording what it got. */
async function hook(statuses: number[]) {
  const got: { body: Record<string, unknown>; auth: string | undefined }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got.push({ body: JSON.parse(body) as Record<string, unknown>, auth: req.headers.authorization });
      res.statusCode = statuses[Math.min(got.length - 1, statuses.length - 1)]!;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/hook`, got, close: () => new Promise((r) => server.close(r)) };
}

const config = (url: string, attempts = 3) => ({
  url,
  headers: { authorization: 'Bearer hook-secret' },
  timeoutMs: 1_000,
  attempts,
  baseDelayMs: 5,
});

describe('alert webhook', () => {
  it('POSTs the alert as JSON with the configured headers, retrying a 5xx until it is taken', async () => {
    const h = await hook([503, 500, 200]);
    const sink = createLogSink();
    const alerter = createAlerter(config(h.url), sink.log);
    alerter.send(alert);
    await alerter.drain();
    assert.equal(h.got.length, 3);
    assert.equal(h.got[2]!.body.type, 'budget.threshold');
    assert.equal(h.got[2]!.body.threshold_percent, 80);
    assert.equal(h.got[2]!.auth, 'Bearer hook-secret');
    assert.ok(!sink.text().includes('alert webhook failed'));
    await h.close();
  });

  it('gives up after its attempts (or at once on a 4xx) and leaves the alert in an error line', async () => {
    const h = await hook([500]);
    const sink = createLogSink();
    const alerter = createAlerter(config(h.url, 2), sink.log);
    alerter.send(alert);
    await alerter.drain();
    assert.equal(h.got.length, 2);
    const failed = await sink.waitFor(
      (l) => l.msg === 'alert webhook failed; the alert is only in this log line',
    );
    assert.equal((failed.alert as Alert).team, 't');
    const bad = await hook([400]);
    const again = createAlerter(config(bad.url, 5), sink.log);
    again.send(alert);
    await again.drain();
    assert.equal(bad.got.length, 1, 'a 400 is not retried');
    await h.close();
    await bad.close();
  });

  it('only logs when no webhook is configured', async () => {
    const sink = createLogSink();
    const alerter = createAlerter(undefined, sink.log);
    alerter.send(alert);
    await alerter.drain();
    assert.equal((await sink.waitFor((l) => l.msg === 'alert')).level, 'warn');
  });
});
