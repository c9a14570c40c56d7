import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { errors } from '../../../src/errors.js';
import { writeSse } from '../../../src/http/sse-writer.js';
import type { Chunk, StreamOutcome } from '../../../src/pipeline/types.js';

/** What the server's socket was asked to send, one entry per write or writev it made. */
type Sent = string[][];

function outcome(chunks: AsyncIterable<Chunk>): StreamOutcome {
  return { kind: 'stream', status: 200, headers: {}, chunks, usage: Promise.resolve(undefined) };
}

async function* ready(datas: string[], failAfter?: Error): AsyncGenerator<Chunk> {
  for (const data of datas) yield { data };
  if (failAfter) throw failAfter;
}

describe('writeSse', () => {
  let origin: string;
  let handle: (res: ServerResponse, sent: Sent) => Promise<void>;
  const server = createServer((_req, res) => {
    const sent: Sent = [];
    const socket = res.socket as Socket & {
      _write: (c: unknown, e: unknown, cb: unknown) => void;
      _writev: (cs: { chunk: unknown }[], cb: unknown) => void;
    };
    const write = socket._write.bind(socket);
    const writev = socket._writev.bind(socket);
    socket._write = (c, e, cb) => {
      sent.push([String(c)]);
      write(c, e, cb);
    };
    socket._writev = (cs, cb) => {
      sent.push(cs.map((c) => String(c.chunk)));
      writev(cs, cb);
    };
    void handle(res, sent);
  });

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('sends the headers and a first chunk that is ready in one write, then ends with [DONE]', async () => {
    let sent: Sent = [];
    handle = async (res, s) => {
      sent = s;
      await writeSse(res, { 'x-test': '1' }, outcome(ready(['{"a":1}', '{"b":2}'])), {
        onFirstChunk: () => undefined,
        onError: () => undefined,
      });
    };
    const res = await request(origin);
    const text = await res.body.text();
    assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(res.headers['x-test'], '1');
    assert.equal(text, 'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n');
    const firstWrite = sent[0]!.join('');
    assert.match(firstWrite, /^HTTP\/1\.1 200/);
    assert.ok(
      firstWrite.includes('data: {"a":1}'),
      `the first write holds the first chunk: ${JSON.stringify(sent)}`,
    );
  });

  it('sends the headers at once when no chunk is ready yet', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* late(): AsyncGenerator<Chunk> {
      await gate;
      yield { data: '{"late":true}' };
    }
    handle = async (res) => {
      await writeSse(res, {}, outcome(late()), { onFirstChunk: () => undefined, onError: () => undefined });
    };
    const res = await request(origin);
    assert.equal(res.statusCode, 200, 'headers arrived while the chunk was still pending');
    release();
    assert.equal(await res.body.text(), 'data: {"late":true}\n\ndata: [DONE]\n\n');
  });

  it('ends a failed stream with an error event and no [DONE]', async () => {
    handle = async (res) => {
      const err = errors.upstreamBadResponse('fake', 'the stream ended before [DONE]');
      await writeSse(res, {}, outcome(ready(['{"a":1}'], err)), {
        onFirstChunk: () => undefined,
        onError: (e) => e as ReturnType<typeof errors.upstreamBadResponse>,
      });
    };
    const text = await (await request(origin)).body.text();
    assert.ok(text.startsWith('data: {"a":1}\n\ndata: {"error":'), JSON.stringify(text));
    assert.ok(!text.includes('data: [DONE]'), JSON.stringify(text));
  });
});
