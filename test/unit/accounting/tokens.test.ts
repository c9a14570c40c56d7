// Unit tests for exact token counting (src/accounting/tokens.ts): the encoding per model family, known
// counts, OpenAI's chat and tool overheads (against the API figures in OpenAI's cookbook), and the
// worker path: same counts as inline, a worker dying mid-count or timing out, close().
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { after, before, describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';

import {
  CLAUDE_TOKEN_FACTOR,
  DEFAULT_WORKER_NICE,
  IMAGE_TOKENS_DEFAULT,
  IMAGE_TOKENS_LOW_DETAIL,
  REPLY_PRIMING_TOKENS,
  TOKENS_PER_MESSAGE,
  TOKENS_PER_NAME,
  TOKENS_PER_TOOL_CALL,
  TokenCountError,
  TokenCounter,
  modelTokenization,
} from '../../../src/accounting/tokens.js';

/** About 60 characters a line of varied text: `lines` 3000 is ~180 KB, 16000 ~1 MB. */
function bigText(lines: number): string {
  const words = [
    'tollgate',
    'counts',
    'tokens',
    'for',
    'every',
    'team',
    'request',
    'stream',
    'budget',
    'window',
  ];
  return Array.from(
    { length: lines },
    (_, i) =>
      `Line ${i}: ${words[i % 10]} ${words[(i * 7) % 10]} and ${i * 31} more, said "${words[(i * 3) % 10]}".`,
  ).join('\n');
}

// OpenAI cookbook, "How to count tokens with tiktoken", section 6: the API reported 129 prompt tokens
// for gpt-3.5-turbo and gpt-4, and 124 for gpt-4o and gpt-4o-mini.
const COOKBOOK_MESSAGES = [
  {
    role: 'system',
    content:
      'You are a helpful, pattern-following assistant that translates corporate jargon into plain English.',
  },
  { role: 'system', name: 'example_user', content: 'New synergies will help drive top-line growth.' },
  {
    role: 'system',
    name: 'example_assistant',
    content: 'Things working well together will increase revenue.',
  },
  {
    role: 'system',
    name: 'example_user',
    content:
      "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
  },
  {
    role: 'system',
    name: 'example_assistant',
    content: "Let's talk later when we're less busy about how to do better.",
  },
  {
    role: 'user',
    content: "This late pivot means we don't have time to boil the ocean for the client deliverable.",
  },
];

// Section 7: with this tool, the API reported 105 prompt tokens for gpt-3.5-turbo and gpt-4, 101
// for gpt-4o and gpt-4o-mini.
const COOKBOOK_TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_current_weather',
      description: 'Get the current weather in a given location',
      parameters: {
        type: 'object',
        properties: {
          location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' },
          unit: {
            type: 'string',
            description: 'The unit of temperature to return',
            enum: ['celsius', 'fahrenheit'],
          },
        },
        required: ['location'],
      },
    },
  },
];
const COOKBOOK_TOOL_MESSAGES = [
  {
    role: 'system',
    content: 'You are a helpful assistant that can answer to questions about the weather.',
  },
  { role: 'user', content: "What's the weather like in San Francisco?" },
];

describe('modelTokenization / encodingFor', () => {
  it('picks o200k_base or cl100k_base by the longest matching prefix', () => {
    const cases: Array<[string, string]> = [
      ['gpt-4o', 'o200k_base'],
      ['gpt-4o-mini-2024-07-18', 'o200k_base'],
      ['chatgpt-4o-latest', 'o200k_base'],
      ['gpt-4.1-nano', 'o200k_base'],
      ['gpt-4.5-preview', 'o200k_base'],
      ['gpt-5', 'o200k_base'],
      ['gpt-5-mini', 'o200k_base'],
      ['o1', 'o200k_base'],
      ['o1-mini', 'o200k_base'],
      ['o3-mini', 'o200k_base'],
      ['o4-mini', 'o200k_base'],
      ['gpt-4', 'cl100k_base'],
      ['gpt-4-0613', 'cl100k_base'],
      ['gpt-4-turbo-2024-04-09', 'cl100k_base'],
      ['gpt-3.5-turbo', 'cl100k_base'],
      ['gpt-35-turbo', 'cl100k_base'],
      ['text-embedding-3-small', 'cl100k_base'],
      ['text-embedding-3-large', 'cl100k_base'],
      ['text-embedding-ada-002', 'cl100k_base'],
    ];
    for (const [model, encoding] of cases) {
      assert.equal(modelTokenization(model).encoding, encoding, model);
      assert.equal(modelTokenization(model).exact, true, model);
      assert.equal(modelTokenization(model).factor, 1, model);
    }
  });

  it('ignores case, a provider prefix and a fine-tune prefix', () => {
    assert.equal(modelTokenization('GPT-4o').encoding, 'o200k_base');
    assert.equal(modelTokenization('openai/gpt-4o').encoding, 'o200k_base');
    assert.equal(modelTokenization('azure/gpt-4-32k').encoding, 'cl100k_base');
    assert.equal(modelTokenization('ft:gpt-4o-mini:acme::abc123').encoding, 'o200k_base');
    assert.equal(modelTokenization('ft:gpt-3.5-turbo-0125:acme::abc123').encoding, 'cl100k_base');
  });

  it('approximates Claude with o200k_base times CLAUDE_TOKEN_FACTOR, other models with o200k_base', () => {
    assert.deepEqual(modelTokenization('claude-3-5-sonnet-latest'), {
      encoding: 'o200k_base',
      factor: CLAUDE_TOKEN_FACTOR,
      exact: false,
    });
    assert.deepEqual(modelTokenization('anthropic/claude-sonnet-4'), modelTokenization('claude-x'));
    assert.deepEqual(modelTokenization('llama-3.1-70b-instruct'), {
      encoding: 'o200k_base',
      factor: 1,
      exact: false,
    });
    assert.deepEqual(modelTokenization('mistral-large'), modelTokenization('gemini-2.0-flash'));
  });
});

describe('TokenCounter inline counts', () => {
  let counter: TokenCounter;
  before(async () => {
    counter = await TokenCounter.create({ workers: 0 });
  });

  it('encodingFor follows modelTokenization', () => {
    assert.equal(counter.encodingFor('gpt-4o'), 'o200k_base');
    assert.equal(counter.encodingFor('gpt-4'), 'cl100k_base');
  });

  it('counts known strings exactly (checked against js-tiktoken)', () => {
    const known: Array<[string, number, number]> = [
      // text, o200k_base, cl100k_base
      ['hello world', 2, 2],
      ['tiktoken is great!', 6, 6],
      ['The quick brown fox jumps over the lazy dog.', 10, 10],
      ['antidisestablishmentarianism', 6, 6],
      ['get_current_weather', 3, 3],
      ['{"location":"Paris, France"}', 7, 7],
      ['Ünïcödé 🦊 中文', 9, 12],
      ['', 0, 0],
    ];
    for (const [text, o200k, cl100k] of known) {
      assert.equal(counter.countTextSync('gpt-4o', text), o200k, `o200k_base ${JSON.stringify(text)}`);
      assert.equal(counter.countTextSync('gpt-4', text), cl100k, `cl100k_base ${JSON.stringify(text)}`);
    }
  });

  it('counts special-token strings in user text as plain text, without throwing', async () => {
    assert.equal(counter.countTextSync('gpt-4o', '<|endoftext|>'), 7);
    assert.equal(await counter.countText('gpt-4', '<|endoftext|>'), 7);
  });

  it("matches the cookbook's API figures for the chat example: 129 (cl100k), 124 (o200k)", async () => {
    for (const model of ['gpt-3.5-turbo', 'gpt-4', 'gpt-4-0613']) {
      assert.equal(counter.countChatSync(model, { messages: COOKBOOK_MESSAGES }), 129, model);
    }
    for (const model of ['gpt-4o', 'gpt-4o-mini']) {
      assert.equal(await counter.countChat(model, { messages: COOKBOOK_MESSAGES }), 124, model);
    }
  });

  it("matches the cookbook's API figures for the tool example: 105 (cl100k), 101 (o200k)", () => {
    const body = { messages: COOKBOOK_TOOL_MESSAGES, tools: COOKBOOK_TOOLS };
    assert.equal(counter.countChatSync('gpt-3.5-turbo', body), 105);
    assert.equal(counter.countChatSync('gpt-4', body), 105);
    assert.equal(counter.countChatSync('gpt-4o', body), 101);
    assert.equal(counter.countChatSync('gpt-4o-mini', body), 101);
    // The deprecated `functions` list counts the same as the equivalent tools.
    const functions = COOKBOOK_TOOLS.map((tool) => tool.function);
    assert.equal(counter.countChatSync('gpt-4o', { messages: COOKBOOK_TOOL_MESSAGES, functions }), 101);
  });

  it('adds 3 per message, the role, +1 per name, and 3 for the reply priming', () => {
    assert.equal(counter.countChatSync('gpt-4o', { messages: [] }), REPLY_PRIMING_TOKENS);
    const one = { role: 'user', content: 'hello world' };
    // 3 + 'user' (1) + 'hello world' (2) + 3
    assert.equal(counter.countChatSync('gpt-4o', { messages: [one] }), 9);
    assert.equal(TOKENS_PER_MESSAGE + 1 + 2 + REPLY_PRIMING_TOKENS, 9);
    // + 'example_user' (2) + 1
    const named = { ...one, name: 'example_user' };
    assert.equal(counter.countChatSync('gpt-4o', { messages: [named] }), 9 + 2 + TOKENS_PER_NAME);
    assert.equal(counter.countChatSync('gpt-4o', { messages: [one, named] }), 9 + (9 - 3) + 2 + 1);
  });

  it('counts text parts like a string and images at their documented fixed estimates', () => {
    const parts = (...extra: object[]) => ({
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hello world' }, ...extra] }],
    });
    assert.equal(counter.countChatSync('gpt-4o', parts()), 9);
    const low = { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } };
    const auto = { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } };
    assert.equal(counter.countChatSync('gpt-4o', parts(low)), 9 + IMAGE_TOKENS_LOW_DETAIL);
    assert.equal(counter.countChatSync('gpt-4o', parts(auto)), 9 + IMAGE_TOKENS_DEFAULT);
    assert.equal(IMAGE_TOKENS_LOW_DETAIL, 85);
    // Unknown parts and shapes are skipped rather than thrown on.
    const odd = { messages: [{ role: 'user', content: [null, 7, { type: 'input_audio' }] }, 'nope'] };
    assert.equal(counter.countChatSync('gpt-4o', odd), 3 + 1 + 3);
  });

  it("counts an assistant's tool calls: function name + arguments + 3 each", () => {
    const plain = { role: 'assistant', content: null };
    const call = (args: string) => ({
      id: 'call_1',
      type: 'function',
      function: { name: 'get_current_weather', arguments: args },
    });
    const withCall = { ...plain, tool_calls: [call('{"location":"Paris, France"}')] };
    const base = counter.countChatSync('gpt-4o', { messages: [plain] });
    assert.equal(base, 3 + 1 + 3);
    // get_current_weather (3) + arguments (7) + 3
    assert.equal(
      counter.countChatSync('gpt-4o', { messages: [withCall] }),
      base + 3 + 7 + TOKENS_PER_TOOL_CALL,
    );
    const two = { ...plain, tool_calls: [call('{"location":"Paris, France"}'), call('{}')] };
    const braces = counter.countTextSync('gpt-4o', '{}');
    assert.equal(counter.countChatSync('gpt-4o', { messages: [two] }), base + 2 * (3 + 3) + 7 + braces);
    // The deprecated function_call counts the same way.
    const legacy = { ...plain, function_call: call('{"location":"Paris, France"}').function };
    assert.equal(counter.countChatSync('gpt-4o', { messages: [legacy] }), base + 3 + 7 + 3);
  });

  it('counts nested parameter schemas as compact JSON on top of the cookbook formula', () => {
    const flat = { messages: [], tools: COOKBOOK_TOOLS };
    const nestedTools = structuredClone(COOKBOOK_TOOLS) as any[];
    const items = { type: 'object', properties: { day: { type: 'string' } } };
    nestedTools[0].function.parameters.properties.unit.items = items;
    const nested = counter.countChatSync('gpt-4o', { messages: [], tools: nestedTools });
    const extra = counter.countTextSync('gpt-4o', JSON.stringify({ items }));
    assert.equal(nested, counter.countChatSync('gpt-4o', flat) + extra);
  });

  it('scales non-OpenAI approximations and rounds up', () => {
    const text = 'The quick brown fox jumps over the lazy dog.';
    assert.equal(counter.countTextSync('claude-3-5-haiku-latest', text), Math.ceil(10 * CLAUDE_TOKEN_FACTOR));
    assert.equal(
      counter.countChatSync('claude-sonnet-4', { messages: COOKBOOK_MESSAGES }),
      Math.ceil(124 * CLAUDE_TOKEN_FACTOR),
    );
    assert.equal(counter.countTextSync('llama-3.1-8b', text), 10);
  });

  it('counts big inputs inline when it has no worker', async () => {
    const big = bigText(3000);
    assert.equal(await counter.countText('gpt-4o', big), counter.countTextSync('gpt-4o', big));
    assert.deepEqual(counter.stats(), { workers: 0, busy: 0, queued: 0, restarts: 0 });
  });

  after(() => counter.close());
});

describe('TokenCounter worker', () => {
  const big = bigText(3000);
  let counter: TokenCounter;
  before(async () => {
    counter = await TokenCounter.create({ workers: 2, workerThresholdChars: 64 * 1024 });
  });

  it('counts a big text in a worker, with the same result as inline', async () => {
    assert.ok(big.length > 64 * 1024);
    const pending = counter.countText('gpt-4o', big);
    assert.equal(counter.stats().busy, 1, 'sent to a worker');
    assert.equal(await pending, counter.countTextSync('gpt-4o', big));
    assert.equal(counter.stats().busy, 0);
  });

  it('counts a big chat in a worker, with the same result as inline', async () => {
    const body = {
      messages: [
        { role: 'system', content: 'Summarise.', name: 'ops' },
        { role: 'user', content: big },
      ],
      tools: COOKBOOK_TOOLS,
    };
    const pending = counter.countChat('gpt-4', body);
    assert.equal(counter.stats().busy, 1, 'sent to a worker');
    assert.equal(await pending, counter.countChatSync('gpt-4', body));
  });

  it('keeps small texts inline', async () => {
    const pending = counter.countText('gpt-4o', 'hello world');
    assert.equal(counter.stats().busy, 0);
    assert.equal(await pending, 2);
  });

  it('queues what the workers cannot take yet', async () => {
    const texts = [1000, 2000, 3000, 4000, 5000].map((lines) => bigText(lines + 1500));
    const pending = texts.map((text) => counter.countText('gpt-4o', text));
    assert.deepEqual(counter.stats(), { workers: 2, busy: 2, queued: 3, restarts: 0 });
    assert.deepEqual(
      await Promise.all(pending),
      texts.map((text) => counter.countTextSync('gpt-4o', text)),
    );
    assert.equal(counter.stats().queued, 0);
  });

  it(
    'runs its workers at a lower priority than the event loop (Linux)',
    { skip: process.platform !== 'linux' || getPriority() >= DEFAULT_WORKER_NICE },
    () => {
      const nice = (tid: string) => {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      };
      const tids = readdirSync('/proc/self/task');
      assert.equal(tids.filter((tid) => nice(tid) === DEFAULT_WORKER_NICE).length, 2, 'the two workers');
      assert.equal(nice(String(process.pid)), getPriority(), 'the main thread is untouched');
    },
  );

  after(() => counter.close());
});

describe('TokenCounter with lazyWorkers', () => {
  it('starts no worker until a count needs one, then counts there as inline', async () => {
    const workers: Worker[] = [];
    const counter = await TokenCounter.create({ lazyWorkers: true, onWorker: (w) => workers.push(w) });
    try {
      // 1. Created: no worker thread (nor its copy of the encodings); small counts stay inline.
      assert.equal(workers.length, 0);
      assert.equal(await counter.countText('gpt-4o', 'hello world'), 2);
      assert.deepEqual(counter.stats(), { workers: 0, busy: 0, queued: 0, restarts: 0 });
      // 2. The first big counts start the worker (one, for two counts at once) and wait for it.
      const big = bigText(3000);
      assert.ok(big.length >= counter.workerThresholdChars);
      const counts = await Promise.all([counter.countText('gpt-4o', big), counter.countText('gpt-4', big)]);
      assert.equal(workers.length, 1);
      assert.deepEqual(counts, [counter.countTextSync('gpt-4o', big), counter.countTextSync('gpt-4', big)]);
      assert.deepEqual(counter.stats(), { workers: 1, busy: 0, queued: 0, restarts: 0 });
    } finally {
      await counter.close();
    }
  });
});

describe('TokenCounter worker failures', () => {
  const huge = bigText(16000);

  it('rejects the count of a worker that dies mid-count, then restarts it', async () => {
    const workers: Worker[] = [];
    const counter = await TokenCounter.create({ onWorker: (worker) => workers.push(worker) });
    try {
      assert.equal(workers.length, 1);
      const pending = counter.countText('gpt-4o', huge);
      const queued = counter.countText('gpt-4o', huge);
      assert.deepEqual(counter.stats(), { workers: 1, busy: 1, queued: 1, restarts: 0 });
      const rejected = assert.rejects(pending, (err: Error) => {
        assert.ok(err instanceof TokenCountError);
        assert.match(err.message, /token worker exited with code 1/);
        return true;
      });
      await workers[0]!.terminate();
      await rejected;
      assert.equal(counter.stats().restarts, 1);
      assert.equal(workers.length, 2, 'a new worker was started');
      // The job that was waiting runs on the new worker; so does the next one.
      const expected = counter.countTextSync('gpt-4o', huge);
      assert.equal(await queued, expected);
      assert.equal(await counter.countText('gpt-4o', huge), expected);
    } finally {
      await counter.close();
    }
  });

  it('abandons a job that runs past jobTimeoutMs and restarts the worker', async () => {
    const workers: Worker[] = [];
    const counter = await TokenCounter.create({
      jobTimeoutMs: 1,
      onWorker: (worker) => workers.push(worker),
    });
    try {
      await assert.rejects(counter.countText('gpt-4o', huge), /token count timed out after 1 ms/);
      assert.equal(counter.stats().restarts, 1);
      assert.equal(workers.length, 2);
    } finally {
      await counter.close();
    }
  });

  it('close() stops the workers and rejects what waits; inline counting still works', async () => {
    const workers: Worker[] = [];
    const counter = await TokenCounter.create({ onWorker: (worker) => workers.push(worker) });
    const exited = once(workers[0]!, 'exit');
    const rejected = Promise.all([
      assert.rejects(counter.countText('gpt-4o', huge), /token counter closed/), // running
      assert.rejects(counter.countText('gpt-4o', huge), /token counter closed/), // queued
    ]);
    await counter.close();
    await exited;
    await rejected;
    assert.deepEqual(counter.stats(), { workers: 0, busy: 0, queued: 0, restarts: 0 });
    await assert.rejects(counter.countText('gpt-4o', huge), TokenCountError);
    assert.equal(await counter.countText('gpt-4o', 'hello world'), 2);
    assert.equal(workers.length, 1, 'not restarted');
    await counter.close();
  });
});
