// Shared helpers for the tests of the fake upstream's Anthropic Messages API: requests with the
// headers Anthropic requires, a strict parser for its named SSE events, and the wire shapes.
import assert from 'node:assert/strict';
import type { FakeUpstream } from '../../../src/fake-upstream/server.js';
import { postJson, readJson } from './helpers.js';

export const ANTHROPIC_HEADERS = { 'anthropic-version': '2023-06-01' };

export interface SseEvent {
  event: string;
  data: string;
}

/**
 * Splits an SSE body into Anthropic's named events, asserting the framing: every event is exactly an
 * `event: ` line and a `data: ` line followed by a blank line.
 */
export function sseEvents(text: string): SseEvent[] {
  assert.ok(
    text.endsWith('\n\n') || text === '',
    `stream must end on an event boundary: ${JSON.stringify(text.slice(-40))}`,
  );
  return text
    .split('\n\n')
    .slice(0, -1)
    .map((e) => {
      const lines = e.split('\n');
      assert.equal(lines.length, 2, `event must be two lines: ${e}`);
      assert.ok(lines[0]!.startsWith('event: '), `first line must be 'event: ': ${e}`);
      assert.ok(lines[1]!.startsWith('data: '), `second line must be 'data: ': ${e}`);
      return { event: lines[0]!.slice('event: '.length), data: lines[1]!.slice('data: '.length) };
    });
}

export interface AnthropicUsage {
  input_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  cache_creation?: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number };
  output_tokens: number;
  service_tier?: string;
}

export type AnthropicBlock =
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

export interface AnthropicMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: AnthropicBlock[];
  stop_reason: string;
  stop_sequence: string | null;
  usage: AnthropicUsage;
}

export interface AnthropicErrorResponse {
  type: 'error';
  error: { type: string; message: string };
  request_id: string;
}

export const USER = [{ role: 'user', content: 'Say hello' }];
export const BASE = { model: 'claude-sonnet-4-5', max_tokens: 256, messages: USER };
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

export const WEATHER_TOOL = {
  name: 'get_weather',
  description: 'Weather for a city',
  input_schema: {
    type: 'object',
    properties: { city: { type: 'string' }, days: { type: 'integer' }, note: { type: 'string' } },
    required: ['city', 'days'],
  },
};
export const TIME_TOOL = {
  name: 'get_time',
  input_schema: { type: 'object', properties: { tz: { type: 'string' } }, required: ['tz'] },
};

export function post(
  up: FakeUpstream,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return postJson(`${up.url}/messages`, body, { headers: { ...ANTHROPIC_HEADERS, ...headers } });
}

export async function message(up: FakeUpstream, body: unknown, headers?: Record<string, string>) {
  const res = await post(up, body, headers);
  assert.equal(res.status, 200);
  return readJson<AnthropicMessage>(res);
}

export async function stream(
  up: FakeUpstream,
  body: object,
  headers?: Record<string, string>,
): Promise<SseEvent[]> {
  const res = await post(up, { ...body, stream: true }, headers);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  return sseEvents(await res.text());
}

/** Parses each event's data, checking that the `event:` name repeats the data's `type`. */
export function payloads(events: SseEvent[]): any[] {
  return events.map((e) => {
    const data = JSON.parse(e.data);
    assert.equal(data.type, e.event, `event name ${e.event} must match its data type`);
    return data;
  });
}

export async function errorOf(res: Response): Promise<AnthropicErrorResponse> {
  const body = await readJson<AnthropicErrorResponse>(res);
  assert.equal(body.type, 'error');
  assert.equal(body.request_id, res.headers.get('request-id'));
  return body;
}

export function assertAnthropicHeaders(res: Response): void {
  assert.match(res.headers.get('request-id') ?? '', /^req_011C[A-Za-z0-9]{20}$/);
  for (const bucket of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
    assert.match(res.headers.get(`anthropic-ratelimit-${bucket}-limit`) ?? '', /^\d+$/, bucket);
    assert.match(res.headers.get(`anthropic-ratelimit-${bucket}-remaining`) ?? '', /^\d+$/, bucket);
    assert.match(res.headers.get(`anthropic-ratelimit-${bucket}-reset`) ?? '', RFC3339, bucket);
  }
  assert.equal(res.headers.get('x-request-id'), null);
  assert.equal(res.headers.get('x-ratelimit-limit-requests'), null);
}
