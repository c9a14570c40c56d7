// Anthropic stream events -> OpenAI chat.completion.chunk objects, one mapper per stream
// (https://docs.anthropic.com/en/docs/build-with-claude/streaming). Event order: message_start,
// then per content block start / delta* / stop, then message_delta (stop_reason and usage),
// then message_stop; `ping` anywhere; `error` possibly mid-stream.
// - The first chunk carries `delta: {role:'assistant', content:''}`, as OpenAI's does; every
//   chunk has the same id, created and model.
// - text_delta -> delta.content; a tool_use block -> delta.tool_calls with index k, counting
//   tool blocks from 0 (id, type and name on its first chunk, then input_json_delta pieces as
//   `arguments`); thinking_delta -> delta.reasoning_content; signature_delta is dropped. The
//   response_format tool's input_json_delta becomes delta.content (see translate-request.ts).
// - message_delta usage is CUMULATIVE: its values replace those of message_start, never add.
// - The finish chunk (empty delta) and, with `includeUsage`, the usage chunk (choices: [])
//   go out at message_stop; with `includeUsage` every other chunk carries `usage: null`, as
//   OpenAI's stream_options.include_usage does.
import { errors } from '../../errors.js';
import type { Usage } from '../../pipeline/types.js';
import type { SseEvent } from '../sse/parse.js';
import { mapAnthropicError, statusForErrorType } from './map-error.js';
import { isObject, type Json } from './translate-request.js';
import {
  completionId,
  mapStopReason,
  nowSeconds,
  toOpenAIUsage,
  type AnthropicUsage,
} from './translate-response.js';

export interface StreamMapperOptions {
  providerName: string;
  /** Scrubbed out of upstream error messages. */
  apiKey?: string | undefined;
  /** The forced tool that carries a response_format answer, if any. */
  structuredTool: string | undefined;
  /** The client asked for usage: add `usage: null` to chunks and a usage chunk at the end. */
  includeUsage: boolean;
  now?: () => number;
}

type Block = { kind: 'text' | 'thinking' | 'json' | 'other' } | { kind: 'tool'; toolIndex: number };

export class AnthropicStreamMapper {
  private started = false;
  private finishedFlag = false;
  private sawDelta = false;
  private id = '';
  private model: unknown = undefined;
  private readonly created: number;
  private readonly blocks = new Map<number, Block>();
  private toolCount = 0;
  private structuredAnswer = false;
  private stopReason: unknown = null;
  private anthropicUsage: AnthropicUsage = {};

  constructor(private readonly options: StreamMapperOptions) {
    this.created = (options.now ?? nowSeconds)();
  }

  /** message_stop was seen: the stream is complete. */
  get finished(): boolean {
    return this.finishedFlag;
  }

  /** The final usage, once message_delta has given the cumulative counts; else undefined. */
  get usage(): Usage | undefined {
    return this.sawDelta ? toOpenAIUsage(this.anthropicUsage) : undefined;
  }

  /** One SSE event in, the OpenAI chunks it makes out. Throws the mapped error on `error`. */
  push(event: SseEvent): Json[] {
    if (this.finishedFlag) return [];
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      throw this.bad(`an event that is not JSON (${event.event ?? 'unnamed'})`);
    }
    if (!isObject(data)) throw this.bad('an event that is not a JSON object');
    const type = typeof data.type === 'string' ? data.type : event.event;
    if (type === 'ping') return [];
    if (type === 'error') {
      const kind = isObject(data.error) ? data.error.type : undefined;
      throw mapAnthropicError(
        this.options.providerName,
        this.options.apiKey,
        statusForErrorType(kind),
        {},
        event.data,
      );
    }
    if (type === 'message_start') return this.start(data.message);
    if (!this.started) throw this.bad(`'${String(type).slice(0, 40)}' before message_start`);
    switch (type) {
      case 'content_block_start':
        return this.blockStart(data.index, data.content_block);
      case 'content_block_delta':
        return this.blockDelta(data.index, data.delta);
      case 'message_delta':
        if (isObject(data.delta) && data.delta.stop_reason != null) this.stopReason = data.delta.stop_reason;
        if (isObject(data.usage)) this.mergeUsage(data.usage);
        this.sawDelta = true;
        return [];
      case 'message_stop':
        return this.stop();
      default:
        // content_block_stop, and event types added later: nothing to say to an OpenAI client.
        return [];
    }
  }

  private start(message: unknown): Json[] {
    if (this.started || !isObject(message)) throw this.bad('a second or malformed message_start');
    this.started = true;
    this.id = completionId(message.id);
    this.model = message.model;
    if (isObject(message.usage)) this.mergeUsage(message.usage);
    return [this.chunk({ role: 'assistant', content: '' })];
  }

  private blockStart(index: unknown, block: unknown): Json[] {
    if (typeof index !== 'number' || !isObject(block)) throw this.bad('a malformed content_block_start');
    if (block.type === 'text') {
      this.blocks.set(index, { kind: 'text' });
      return typeof block.text === 'string' && block.text.length > 0
        ? [this.chunk({ content: block.text })]
        : [];
    }
    if (block.type === 'thinking') {
      this.blocks.set(index, { kind: 'thinking' });
      return [];
    }
    if (block.type === 'tool_use' && block.name === this.options.structuredTool) {
      this.blocks.set(index, { kind: 'json' });
      this.structuredAnswer = true;
      return [];
    }
    if (block.type === 'tool_use') {
      const toolIndex = this.toolCount++;
      this.blocks.set(index, { kind: 'tool', toolIndex });
      const call = {
        index: toolIndex,
        id: block.id,
        type: 'function',
        function: { name: block.name, arguments: '' },
      };
      return [this.chunk({ tool_calls: [call] })];
    }
    this.blocks.set(index, { kind: 'other' });
    return [];
  }

  private blockDelta(index: unknown, delta: unknown): Json[] {
    const block = typeof index === 'number' ? this.blocks.get(index) : undefined;
    if (!block || !isObject(delta)) throw this.bad('a content_block_delta for an unknown block');
    if (delta.type === 'text_delta' && block.kind === 'text' && typeof delta.text === 'string')
      return delta.text.length > 0 ? [this.chunk({ content: delta.text })] : [];
    if (delta.type === 'thinking_delta' && block.kind === 'thinking' && typeof delta.thinking === 'string')
      return delta.thinking.length > 0 ? [this.chunk({ reasoning_content: delta.thinking })] : [];
    if (delta.type === 'input_json_delta' && typeof delta.partial_json === 'string') {
      if (delta.partial_json.length === 0) return [];
      if (block.kind === 'json') return [this.chunk({ content: delta.partial_json })];
      if (block.kind === 'tool') {
        const call = { index: block.toolIndex, function: { arguments: delta.partial_json } };
        return [this.chunk({ tool_calls: [call] })];
      }
    }
    // signature_delta, citations and deltas of blocks we do not relay.
    return [];
  }

  private stop(): Json[] {
    this.finishedFlag = true;
    const finish = this.chunk({}, mapStopReason(this.stopReason, this.structuredAnswer));
    if (!this.options.includeUsage) return [finish];
    return [finish, { ...this.base(), choices: [], usage: toOpenAIUsage(this.anthropicUsage) }];
  }

  private mergeUsage(u: Json): void {
    const merged: Json = { ...this.anthropicUsage };
    for (const [k, v] of Object.entries(u)) if (v !== null && v !== undefined) merged[k] = v;
    this.anthropicUsage = merged;
  }

  private base(): Json {
    return { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model };
  }

  private chunk(delta: Json, finishReason: string | null = null): Json {
    const out: Json = {
      ...this.base(),
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    };
    if (this.options.includeUsage) out.usage = null;
    return out;
  }

  private bad(detail: string): Error {
    return errors.upstreamBadResponse(this.options.providerName, `the stream sent ${detail}`);
  }
}
