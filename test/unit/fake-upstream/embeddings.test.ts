// Embeddings and the model list from the fake upstream: deterministic vectors, every input form
// OpenAI accepts, and base64 output that decodes to exactly the float answer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFakeUpstream } from '../../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../../src/fake-upstream/server.js';
import { postJson, readJson } from './helpers.js';
import type { ErrorResponse, ModelList } from './helpers.js';

interface EmbeddingList {
  object: string;
  data: { object: string; index: number; embedding: number[] | string }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

function decodeBase64Floats(b64: string): number[] {
  const bytes = Buffer.from(b64, 'base64');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let i = 0; i < bytes.byteLength; i += 4) out.push(view.getFloat32(i, true));
  return out;
}

void describe('fake upstream: embeddings and models', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream();
  });
  after(() => up.close());

  async function embed(body: Record<string, unknown>): Promise<EmbeddingList> {
    const res = await postJson(`${up.url}/embeddings`, { model: 'text-embedding-3-small', ...body });
    assert.equal(res.status, 200);
    assert.ok(res.headers.get('x-request-id'));
    return readJson<EmbeddingList>(res);
  }

  void it('returns one deterministic unit-length float vector per input', async () => {
    const a = await embed({ input: ['hello world', 'other text'] });
    assert.equal(a.object, 'list');
    assert.equal(a.model, 'text-embedding-3-small');
    assert.equal(a.data.length, 2);
    a.data.forEach((d, i) => {
      assert.equal(d.object, 'embedding');
      assert.equal(d.index, i);
      assert.ok(Array.isArray(d.embedding));
      assert.equal(d.embedding.length, 8);
      assert.ok(Array.isArray(d.embedding));
      const norm = Math.hypot(...d.embedding);
      assert.ok(Math.abs(norm - 1) < 1e-5, `norm ${norm}`);
    });
    assert.notDeepEqual(a.data[0]?.embedding, a.data[1]?.embedding);
    assert.deepEqual(a.usage, { prompt_tokens: 3 + 3, total_tokens: 6 });

    const again = await embed({ input: 'hello world' });
    assert.deepEqual(again.data[0]?.embedding, a.data[0]?.embedding);
  });

  void it('honours dimensions and accepts token arrays', async () => {
    const dims = await embed({ input: 'x', dimensions: 32 });
    assert.equal((dims.data[0]?.embedding as number[]).length, 32);

    const tokens = await embed({ input: [1, 2, 3, 4] });
    assert.equal(tokens.data.length, 1);
    assert.equal(tokens.usage.prompt_tokens, 4);

    const batches = await embed({ input: [[1, 2], [3], [4, 5, 6]] });
    assert.equal(batches.data.length, 3);
    assert.equal(batches.usage.prompt_tokens, 6);
  });

  void it('encodes base64 as little-endian float32 bytes equal to the float answer', async () => {
    const input = ['the quick brown fox', 'jumps'];
    const floats = await embed({ input, dimensions: 16 });
    const b64 = await embed({ input, dimensions: 16, encoding_format: 'base64' });
    assert.equal(b64.data.length, 2);
    b64.data.forEach((d, i) => {
      assert.equal(typeof d.embedding, 'string');
      assert.deepEqual(decodeBase64Floats(d.embedding as string), floats.data[i]?.embedding);
    });
  });

  void it('rejects requests without input or model, and bad input shapes', async () => {
    for (const [body, param] of [
      [{ model: 'e' }, 'input'],
      [{ input: 'x' }, 'model'],
      [{ model: 'e', input: [] }, 'input'],
      [{ model: 'e', input: [{ text: 'x' }] }, 'input'],
      [{ model: 'e', input: 'x', encoding_format: 'hex' }, 'encoding_format'],
    ] as const) {
      const res = await postJson(`${up.url}/embeddings`, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      const err = (await readJson<ErrorResponse>(res)).error;
      assert.equal(err.param, param);
      assert.equal(err.type, 'invalid_request_error');
    }
  });

  void it('lists models in OpenAI shape', async () => {
    const res = await fetch(`${up.url}/models`);
    assert.equal(res.status, 200);
    assert.ok(res.headers.get('x-ratelimit-limit-requests'));
    const body = await readJson<ModelList>(res);
    assert.equal(body.object, 'list');
    assert.ok(body.data.length >= 3);
    assert.deepEqual(body.data[0], {
      id: 'gpt-4o-mini',
      object: 'model',
      created: 1700000000,
      owned_by: 'openai',
    });

    const one = await fetch(`${up.url}/models/gpt-4o-mini`);
    assert.deepEqual(await one.json(), body.data[0]);
    const missing = await fetch(`${up.url}/models/nope`);
    assert.equal(missing.status, 404);
    assert.equal((await readJson<ErrorResponse>(missing)).error.code, 'model_not_found');
  });
});
