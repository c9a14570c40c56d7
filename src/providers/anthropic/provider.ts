// The Anthropic provider: translates the OpenAI chat request to a Messages API call
// (POST {baseUrl}/messages, https://docs.anthropic.com/en/api/messages) and the answer back, so
// clients only ever see OpenAI's shapes. A JSON answer becomes one chat.completion object; a
// stream is mapped event by event as it arrives, never buffered. The stream's `usage` settles
// in a finally, with the upstream's final counts when message_delta gave them, else undefined
// (the pipeline then falls back to its estimate). Anthropic has no embeddings endpoint.
import type { ProviderConfig } from '../../config/schema.js';
import { errors } from '../../errors.js';
import type { Chunk, Deployment, Outcome, PipelineContext, Usage } from '../../pipeline/types.js';
import { SseSource } from '../sse/source.js';
import type { Provider } from '../types.js';
import {
  expectEventStream,
  readBody,
  rejectUnlessOk,
  UpstreamClient,
  type UpstreamResponse,
} from '../upstream-client.js';
import { mapAnthropicError } from './map-error.js';
import { DEFAULT_MAX_TOKENS, translateRequest } from './translate-request.js';
import { translateResponse } from './translate-response.js';
import { AnthropicStreamMapper } from './translate-stream.js';

/** https://docs.anthropic.com/en/api/versioning; a `headers` entry in the config overrides it. */
const ANTHROPIC_VERSION = '2023-06-01';

export interface AnthropicProviderOptions {
  /** max_tokens for requests that set none (Anthropic requires it). Default 4096. */
  defaultMaxTokens?: number;
  /** Unix seconds for `created`; injectable for tests. */
  now?: () => number;
}

export function createAnthropicProvider(
  config: ProviderConfig,
  options: AnthropicProviderOptions = {},
): Provider {
  const client = new UpstreamClient(config);
  const configured = Object.fromEntries(Object.entries(config.headers).map(([k, v]) => [k.toLowerCase(), v]));
  const headers: Record<string, string> = {
    'anthropic-version': ANTHROPIC_VERSION,
    ...configured,
    'content-type': 'application/json',
    ...(config.apiKey ? { 'x-api-key': config.apiKey } : {}),
  };
  const defaultMaxTokens = options.defaultMaxTokens ?? DEFAULT_MAX_TOKENS;

  return {
    name: config.name,
    close: () => client.close(),

    async call(ctx: PipelineContext, target: Deployment): Promise<Outcome> {
      if (ctx.endpoint === 'embeddings') {
        throw errors.unsupportedParameter(
          'model',
          `names a model served by the Anthropic Messages API, which has no embeddings endpoint.`,
        );
      }
      // Translation errors are the client's 400s, raised before anything goes upstream.
      const { body, structuredTool } = translateRequest(ctx.body, {
        model: target.model,
        stream: ctx.stream,
        defaultMaxTokens,
      });
      const res = await client.request({
        path: '/messages',
        headers,
        body: JSON.stringify(body),
        signal: ctx.signal,
        ...client.timeoutsFor(target, ctx.deadlineAt),
      });

      await rejectUnlessOk(res, (status, headers, text) =>
        mapAnthropicError(config.name, config.apiKey, status, headers, text),
      );

      if (ctx.stream) {
        await expectEventStream(res, config.name);
        const mapper = new AnthropicStreamMapper({
          providerName: config.name,
          apiKey: config.apiKey,
          structuredTool,
          includeUsage: ctx.clientWantsUsage,
          ...(options.now ? { now: options.now } : {}),
        });
        const { chunks, usage } = relayStream(res, mapper, config.name, config.maxResponseBytes);
        return { kind: 'stream', status: 200, headers: {}, chunks, usage };
      }

      let parsed: unknown;
      try {
        const raw = await readBody(res, config.maxResponseBytes, config.name);
        parsed = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        if (err instanceof SyntaxError)
          throw errors.upstreamBadResponse(config.name, 'the response body is not valid JSON');
        throw res.mapError(err);
      } finally {
        res.done();
      }
      const completion = translateResponse(parsed, {
        providerName: config.name,
        structuredTool,
        ...(options.now ? { now: options.now } : {}),
      });
      return {
        kind: 'json',
        status: 200,
        headers: {},
        body: completion,
        usage: completion.usage as Usage | undefined,
      };
    },
  };
}

/**
 * Maps the event stream chunk by chunk as it arrives (SseSource: a stream that ends without
 * message_stop is a failure, never a silent success; the body is read to its end after it).
 * An `error` event throws the mapped error.
 */
function relayStream(
  res: UpstreamResponse,
  mapper: AnthropicStreamMapper,
  providerName: string,
  maxBytes: number,
): { chunks: AsyncIterable<Chunk>; usage: Promise<Usage | undefined> } {
  const chunks = new SseSource(res, providerName, maxBytes, {
    unfinishedMessage: 'the stream ended before message_stop',
    usage: () => mapper.usage,
    event(ev, out) {
      for (const chunk of mapper.push(ev)) out.push({ data: JSON.stringify(chunk) });
      return mapper.finished;
    },
  });
  return { chunks, usage: chunks.usage };
}
