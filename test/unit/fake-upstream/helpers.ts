// Shared helpers for the fake-upstream tests: JSON POSTs against a running fake and a strict
// parser for its SSE output, so that every test checks framing the same way.
import assert from 'node:assert/strict';

export async function postJson(
  url: string,
  body: unknown,
  init: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(init.signal ? { signal: init.signal } : {}),
  });
}

/**
 * Splits an SSE body into its `data:` payloads, asserting OpenAI's framing: every event is exactly one
 * `data: ` line followed by a blank line.
 */
export function sseData(text: string): string[] {
  assert.ok(
    text.endsWith('\n\n') || text === '',
    `stream must end on an event boundary: ${JSON.stringify(text.slice(-40))}`,
  );
  const events = text.split('\n\n').slice(0, -1);
  return events.map((e) => {
    assert.ok(e.startsWith('data: '), `event must start with 'data: ': ${e}`);
    assert.ok(!e.includes('\n'), `event must be a single line: ${e}`);
    return e.slice('data: '.length);
  });
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: string;
  function: { name?: string; arguments: string };
}

export interface Chunk {
  id: string;
  object: string;
  created: number;
  model: string;
  system_fingerprint: string;
  choices: {
    index: number;
    delta: { role?: string; content?: string | null; refusal?: null; tool_calls?: ToolCallDelta[] };
    logprobs: null;
    finish_reason: string | null;
  }[];
  usage?: Usage | null;
}

export interface ChatCompletion {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: {
    index: number;
    message: {
      role: string;
      content: string | null;
      tool_calls?: { id: string; type: string; function: { name: string; arguments: string } }[];
    };
    finish_reason: string;
  }[];
  usage: Usage;
}

export interface ErrorResponse {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface ModelList {
  object: string;
  data: { id: string; object: string; created: number; owned_by: string }[];
}

/** Reads a JSON body as the shape the test expects; the assertions are what check it. */
export async function readJson<T>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

/** Parses a complete stream: JSON chunks followed by a final `[DONE]`. */
export function parseStream(text: string): Chunk[] {
  const data = sseData(text);
  assert.equal(data.at(-1), '[DONE]', 'stream must end with [DONE]');
  return data.slice(0, -1).map((d) => JSON.parse(d) as Chunk);
}

/** Reads a body until it ends or fails; returns what arrived and whether it failed. */
export async function readUntilError(res: Response): Promise<{ text: string; failed: boolean }> {
  assert.ok(res.body);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { text, failed: false };
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    return { text, failed: true };
  }
}

export const USER_MESSAGES = [{ role: 'user', content: 'Say hello' }];
